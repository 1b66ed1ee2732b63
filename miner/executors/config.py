"""Executor settings: frozen dataclasses, validated on construction (the agent loads them)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from core.errors import InvalidArgument

# The environment variable that sets each model service's backend URL (named in errors).
BACKEND_URL_ENV = {
    "llm": "AITBC_MINER_LLM_URL",
    "whisper": "AITBC_MINER_WHISPER_URL",
    "stable-diffusion": "AITBC_MINER_STABLE_DIFFUSION_URL",
}

CYCLES_DEVICES = ("auto", "CPU", "CUDA", "OPTIX", "HIP", "ONEAPI", "METAL")


@dataclass(frozen=True)
class BackendConfig:
    """A local inference server speaking the OpenAI-compatible HTTP API."""

    # Base URL, e.g. "http://127.0.0.1:11434"; a trailing "/v1" is accepted. Empty: not set.
    url: str = ""
    # Model name sent in requests; a job may name another one with its `model` parameter.
    model: str = ""
    api_key: str = ""
    # Whole-request bound (inference can be slow) and the connect bound.
    timeout_s: float = 600.0
    connect_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if self.url and not self.url.startswith(("http://", "https://")):
            raise InvalidArgument.field("url", f"must start with http:// or https://: {self.url!r}")
        for name in ("timeout_s", "connect_timeout_s"):
            if not getattr(self, name) > 0:
                raise InvalidArgument.field(name, "must be > 0")

    @property
    def base_url(self) -> str:
        """The URL without trailing "/" or "/v1", so paths can always start with /v1/."""
        url = self.url.rstrip("/")
        return url[: -len("/v1")] if url.endswith("/v1") else url


@dataclass(frozen=True)
class ExecutorConfig:
    """Everything the executors need; no executor reads the environment itself."""

    llm: BackendConfig = field(default_factory=BackendConfig)
    whisper: BackendConfig = field(default_factory=BackendConfig)
    stable_diffusion: BackendConfig = field(default_factory=BackendConfig)
    # Inputs from loopback/private/link-local hosts are refused unless this is set.
    allow_private_downloads: bool = False
    max_download_bytes: int = 4 * 1024**3
    download_timeout_s: float = 60.0
    # Larger inline results are stored as a JSON artifact instead.
    inline_result_max_bytes: int = 256 * 1024
    # Program names (looked up on PATH) or paths.
    ffmpeg_path: str = "ffmpeg"
    ffprobe_path: str = "ffprobe"
    blender_path: str = "blender"
    # Cycles device: "auto" picks the first GPU backend with devices, else the CPU.
    blender_cycles_device: str = "auto"
    blender_max_frames: int = 10_000
    # echo / sha256 / sleep: deterministic CPU services for tests and benchmarks.
    builtin_services: bool = True

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.endswith(("_bytes", "_s", "_frames")) and not value > 0:
                raise InvalidArgument.field(f.name, f"must be > 0, got {value!r}")
            if f.name.endswith("_path") and not value:
                raise InvalidArgument.field(f.name, "must not be empty")
        if self.blender_cycles_device not in CYCLES_DEVICES:
            raise InvalidArgument.field(
                "blender_cycles_device", f"must be one of {', '.join(CYCLES_DEVICES)}"
            )

    def backend(self, service: str) -> BackendConfig:
        """The backend of a model service ("llm", "whisper", "stable-diffusion")."""
        return {
            "llm": self.llm,
            "whisper": self.whisper,
            "stable-diffusion": self.stable_diffusion,
        }[service]
