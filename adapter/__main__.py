"""`hf-adapter` and `python -m adapter`: `adapter.cli`, imported the fast way (`cli_startup`)."""

from cli_startup import run


def main() -> int:
    return run("adapter.cli")


if __name__ == "__main__":
    raise SystemExit(main())
