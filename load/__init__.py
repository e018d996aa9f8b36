"""Load tests of the adapter with Locust: user classes (`load/locustfile.py`), the runner that
brings a local stack up and drives Locust as a subprocess (`load.run`), and the report
(`load.report`). Locust itself is only ever imported by the locustfile, in Locust's process."""
