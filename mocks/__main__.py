"""`hf-mock` and `python -m mocks`: `mocks.cli`, imported the fast way (`cli_startup`)."""

from cli_startup import run


def main() -> int:
    return run("mocks.cli")


if __name__ == "__main__":
    raise SystemExit(main())
