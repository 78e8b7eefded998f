"""Reports rendered from results.json (a dict), never from live Python objects."""
