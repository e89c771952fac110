"""Shared test settings: the theory's tables are cached in a folder of this test session."""

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def _table_cache(tmp_path_factory):
    """Tables computed by the tests (and the commands they start) go to a temporary folder,
    not the user's cache."""
    previous = os.environ.get("SIGPROP_CACHE")
    os.environ["SIGPROP_CACHE"] = str(tmp_path_factory.mktemp("sigprop-cache"))
    yield
    if previous is None:
        os.environ.pop("SIGPROP_CACHE", None)
    else:
        os.environ["SIGPROP_CACHE"] = previous
