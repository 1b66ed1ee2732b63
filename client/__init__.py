"""Client SDK and the `aitbc` command line."""

from client.errors import SdkError
from client.sdk import Client

__all__ = ["Client", "SdkError"]
