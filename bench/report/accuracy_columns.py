"""Which accuracy columns a results table shows: top-1 and agreement for classifiers,
cosine and retrieval overlap for embedding models (whose argmax means nothing)."""

from __future__ import annotations


def accuracy_columns(rows: list[dict]) -> list[str]:
    if any(row["accuracy"].get("overlap_at_10") is not None for row in rows):
        return ["cosine mean", "cosine min", "overlap@10"]
    return ["top-1", "agreement"]


# each column's field in a row's accuracy
FIELDS = {
    "top-1": "top1",
    "agreement": "agreement_top1",
    "cosine mean": "cosine_mean",
    "cosine min": "cosine_min",
    "overlap@10": "overlap_at_10",
}


def accuracy_values(row: dict, columns: list[str]) -> list[float | None]:
    return [row["accuracy"].get(FIELDS[column]) for column in columns]


def accuracy_cells(row: dict, columns: list[str]) -> list[str]:
    accuracy = row["accuracy"]
    values = {
        "top-1": _pct(accuracy["top1"]),
        "agreement": _pct(accuracy["agreement_top1"]),
        "cosine mean": _fixed(accuracy["cosine_mean"]),
        "cosine min": _fixed(accuracy["cosine_min"]),
        "overlap@10": _fixed(accuracy.get("overlap_at_10"), 3),
    }
    return [values[column] for column in columns]


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f}%"


def _fixed(value: float | None, digits: int = 5) -> str:
    return "—" if value is None else f"{value:.{digits}f}"
