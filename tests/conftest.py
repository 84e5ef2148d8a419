"""Slow tests first: pytest-xdist hands tests out in collection order, so the long ones
(child processes on fake devices) start at once and the short ones fill in around them,
instead of one long test starting last while the other worker idles."""


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable
