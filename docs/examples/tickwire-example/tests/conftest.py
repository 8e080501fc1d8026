"""The conformance kit's fixtures (memory_sink, make_pipeline, anyio_backend) in one line."""

pytest_plugins = ["tickwire.testing.pytest_plugin"]
