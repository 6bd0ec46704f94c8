"""Error types. Every error the CLI reports is an OciError: one line, an exit code."""


class OciError(Exception):
    exit_code = 1


class UsageError(OciError):
    pass


class ConfigError(OciError):
    """A config.json problem: names the JSON pointer of the field and the reason."""

    def __init__(self, pointer, reason, source="config.json"):
        self.pointer = pointer
        self.reason = reason
        self.source = source
        super().__init__(f"{source}: {pointer or '/'}: {reason}")


class NotFound(OciError):
    def __init__(self, msg="container does not exist"):
        super().__init__(msg)


class AlreadyExists(OciError):
    def __init__(self, msg="container with given ID already exists"):
        super().__init__(msg)


class InvalidID(OciError):
    def __init__(self, msg="invalid container ID format"):
        super().__init__(msg)


class StateError(OciError):
    """Operation not allowed in the container's current status (no side effects)."""


class SpawnError(OciError):
    """The container init reported an error while setting up."""


class HookError(OciError):
    pass
