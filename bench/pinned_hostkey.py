"""ssh's KnownHostsCommand for a device whose host key is pinned by its SHA256 fingerprint.

    KnownHostsCommand /abs/python /abs/pinned_hostkey.py SHA256:xxxx %H %t %K %f

ssh runs it (no shell) once before the key exchange, with %t %K %f "NONE", and once with
the key the device offered. It answers a known_hosts line for the offered key only when
the key's fingerprint is the pinned one; otherwise nothing, and ssh refuses the device
("Host key verification failed", exit 255). One connection, so no key can be swapped
between a check and the login. Standard library only.
"""

import sys


def main(argv):
    if len(argv) != 5:
        sys.stderr.write("usage: pinned_hostkey.py SHA256:PINNED %H %t %K %f\n")
        return 2
    pinned, host, key_type, key, fingerprint = argv
    if key_type != "NONE" and fingerprint == pinned:
        sys.stdout.write(f"{host} {key_type} {key}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
