"""`hf-conformance` and `python -m conformance`: `conformance.cli`, imported the fast way
(`cli_startup`)."""

from cli_startup import run


def main() -> int:
    return run("conformance.cli")


if __name__ == "__main__":
    raise SystemExit(main())
