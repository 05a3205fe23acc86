"""moelora-bench's bench.csv, shared by the comparison tools beside it."""
import csv


def load_cases(path):
    """The runs of a bench.csv by case name: {case: row (dict of strings)}."""
    with open(path) as f:
        return {r["case"]: r for r in csv.DictReader(f)}
