"""prefkit: preference (DPO) datasets for tool-using LLM agents, judged on safety and helpfulness."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("prefkit")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
