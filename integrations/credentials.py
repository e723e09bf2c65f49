"""Where an adapter's credential comes from: its environment variable, or a Prefect
Secret block named in a setting, for teams that keep credentials in Prefect.

Settings are checked without I/O (one of the two must be set, which `leadflow check`
reports); the block is read on first use and kept for the adapter's life. The value
stays a `SecretStr` until the moment it goes into a request header.
"""

from __future__ import annotations

from pydantic import SecretStr

from leadflow.integrations.errors import AuthenticationError
from leadflow.settings import SettingsError


class Credential:
    """A secret from `value` (env) or the Prefect Secret block `block`."""

    def __init__(self, env_name: str, value: SecretStr | None, block: str | None = None) -> None:
        self.env_name = env_name
        self.block_env_name = env_name + "_BLOCK"
        self._value = value
        self.block = block

    @property
    def configured(self) -> bool:
        return self._value is not None or bool(self.block)

    def require(self, adapter: str) -> Credential:
        """Raise SettingsError naming both variables when neither is set."""
        if not self.configured:
            raise SettingsError(
                f"{self.env_name}: required by the {adapter} adapter, not set "
                f"(or name a Prefect Secret block in {self.block_env_name})"
            )
        return self

    async def get(self) -> SecretStr:
        if self._value is not None:
            return self._value
        if not self.block:
            raise AuthenticationError(f"{self.env_name}: not set")
        self._value = await load_secret_block(self.block, self.block_env_name)
        return self._value

    def __repr__(self) -> str:  # never the value
        source = f"block {self.block!r}" if self.block else self.env_name
        return f"Credential({source})"


async def load_secret_block(name: str, setting: str) -> SecretStr:
    """The value of the Prefect Secret block `name`, read through the Prefect API."""
    from prefect.blocks.system import Secret

    try:
        block = await Secret.aload(name)
    except ValueError as exc:  # Prefect's "Unable to find block document named ..."
        raise AuthenticationError(f"{setting}: no Prefect Secret block named {name!r}") from exc
    value: object = block.get()  # type: ignore[attr-defined]  # Secret.aload is untyped
    if not isinstance(value, str):
        raise AuthenticationError(f"{setting}: Prefect Secret block {name!r} is not a string")
    return SecretStr(value)
