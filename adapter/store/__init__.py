"""The adapter's store: models, repositories, migrations and field encryption (`crypto`)."""
