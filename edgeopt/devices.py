"""Devices that measure: this machine (`local`, the default) and machines reached over SSH,
defined by a recipe's `devices:` or a devices file (any YAML with a `devices:` mapping; a
recipe is one), chosen with --device NAME.

A device's CPU decides the INT8 target built for it (`auto` resolves per device), and its
own fingerprint goes with its numbers. `edgeopt devices check` says what each one is and
can run, or why it cannot be used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import ValidationError

from bench.device_client import RemoteDevice
from bench.device_replies import Info, one_line
from bench.remote import Probed, probe_remote
from bench.ssh import SshTarget
from edgeopt.core.errors import RecipeError
from edgeopt.core.machine import fingerprint
from edgeopt.core.targets import Target, host_target
from edgeopt.device_spec import LOCAL, DeviceSpec
from edgeopt.doctor import report
from edgeopt.problems import describe
from edgeopt.recipe import LoadedRecipe


@dataclass(frozen=True)
class Device:
    name: str
    remote: RemoteDevice | None = None  # None: this machine
    threads: tuple[int, ...] | None = None  # the device's own thread counts, where it has them

    @property
    def where(self) -> str:
        return "this machine" if self.remote is None else f"ssh {self.remote.target.destination}"


LOCAL_DEVICE = Device(LOCAL)


def _device(name: str, spec: DeviceSpec, folder: Path) -> Device:
    def resolved(path: Path | None, key: str) -> Path | None:
        if path is None:
            return None
        path = path if path.is_absolute() else (folder / path).resolve()
        if not path.is_file():
            raise RecipeError(f"devices.{name}.{key}: file not found: {path}")
        return path

    target = SshTarget(
        name=name,
        destination=spec.ssh,
        connect_timeout_s=spec.timeouts.connect,
        heartbeat_s=spec.timeouts.heartbeat,
        host_key=spec.host_key,
        known_hosts=resolved(spec.known_hosts, "known_hosts"),
        identity=resolved(spec.identity, "identity"),
    )
    remote = RemoteDevice(target, spec.python, spec.workdir, spec.timeouts.round)
    return Device(name, remote, tuple(spec.threads) if spec.threads else None)


def load_devices_file(path: Path) -> dict[str, DeviceSpec]:
    """The `devices:` of a YAML file, validated (the rest of the file is not read)."""
    if not path.is_file():
        raise RecipeError(f"{path}: devices file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise RecipeError(f"{path}: not valid YAML ({one_line(str(err))})") from err
    devices = data.get("devices") if isinstance(data, dict) else None
    if not isinstance(devices, dict) or not devices:
        raise RecipeError(f"{path}: no devices: mapping (name: {{ssh: user@host, ...}}) in it")
    specs = {}
    for name, spec in devices.items():
        try:
            specs[str(name)] = DeviceSpec.model_validate(spec)
        except ValidationError as err:
            raise RecipeError(f"{path}: {describe(err, DeviceSpec, prefix=('devices', name))}") from err
    if LOCAL in specs:
        raise RecipeError(f"{path}: devices.{LOCAL}: '{LOCAL}' names this machine; pick another device name")
    return specs


def defined_devices(loaded: LoadedRecipe | None, devices_file: Path | None) -> dict[str, Device]:
    """Every device a name can pick: local, the recipe's, the devices file's."""
    devices = {LOCAL: LOCAL_DEVICE}
    if loaded is not None:
        devices |= {name: _device(name, spec, loaded.path.parent) for name, spec in loaded.recipe.devices.items()}
    if devices_file is not None:
        for name, spec in load_devices_file(devices_file).items():
            if name in devices:
                raise RecipeError(f"{devices_file}: device '{name}' is defined in the recipe too; keep one")
            devices[name] = _device(name, spec, devices_file.parent)
    return devices


def select(names: list[str], defined: dict[str, Device]) -> list[Device]:
    unknown = [name for name in names if name not in defined]
    if unknown:
        hint = "" if len(defined) > 1 else " (define devices: in the recipe, or give --devices FILE)"
        raise RecipeError(f"--device {unknown[0]}: not one of {', '.join(defined)}{hint}")
    return [defined[name] for name in dict.fromkeys(names)]


def probe(device: Device) -> Probed:
    """A remote device's Info (the local one needs none), or its recorded fault."""
    if device.remote is None:
        return Probed(None, "ok", ())
    return probe_remote(device.remote)


def device_target(asked: Target, device: Device, info: Info | None) -> tuple[Target, str]:
    """The target a device's INT8 is built for: the one asked for, or with `auto` the
    device's own, from its CPU's architecture and flags."""
    if asked is not Target.AUTO:
        return asked, "asked for"
    if device.remote is None:
        target, why = host_target()
        return target, f"this host: {why}"
    assert info is not None and info.fingerprint is not None, device.name
    target, why = host_target(info.fingerprint.arch, list(info.fingerprint.cpu_flags))
    return target, f"device {device.name}: {why}"


def record(device: Device, probed: Probed, target: Target | None, reason: str | None) -> dict:
    """The device as results.json records it beside its rows."""
    if device.remote is None:
        machine = fingerprint()
        python, runtimes = machine["python"], None
    else:
        info = probed.info
        machine = info.fingerprint.model_dump() if info and info.fingerprint else None
        python = f"{info.python} {info.version}" if info else device.remote.python
        runtimes = {k: v.model_dump() for k, v in info.runtimes.items()} if info and info.runtimes else None
    return {
        "name": device.name,
        "kind": "local" if device.remote is None else "ssh",
        "ssh": None if device.remote is None else device.remote.target.destination,
        "python": python,
        "fingerprint": machine,
        "runtimes": runtimes,
        "target": str(target) if target else None,
        "target_reason": reason,
        "status": probed.status,
        "faults": list(probed.faults),
    }


def check(device: Device) -> tuple[list[str], str | None]:
    """What `edgeopt devices check` prints for one device, and the line that says why it
    cannot measure (None when it can)."""
    if device.remote is None:
        return [f"{device.name}  ok  this machine", *(f"  {line}" for line in report() if line)], None
    probed = probe(device)
    info = probed.info
    if info is None:
        return [f"{device.name}  FAILED ({probed.status})  {device.where}"], probed.faults[-1]
    machine, target = info.fingerprint, device_target(Target.AUTO, device, info)
    lines = [
        f"{device.name}  {probed.status}  {device.where}",
        f"  python    {one_line(info.python)} {one_line(info.version)}",
        f"  cpu       {one_line(machine.cpu)} ({one_line(machine.arch)}; {machine.logical_cores} logical cores; "
        f"{machine.memory_gb} GB)",
        f"  flags     {' '.join(machine.cpu_flags) or 'none of the ones INT8 speed depends on'}",
        f"  target    {target[0]} ({target[1]}): INT8 built for it by edgeopt run --device {device.name}",
        f"  disk      {info.disk_free_bytes / 1e9:.1f} GB free at {one_line(info.root)}",
        f"  gpu       {', '.join(map(one_line, machine.gpus)) or 'none'}",
        "  libraries " + ", ".join(f"{one_line(k)} {one_line(v)}" for k, v in machine.libraries.items() if v),
        "  runtimes",
    ]
    for runtime_id, availability in (info.runtimes or {}).items():
        lines.append(
            f"    {one_line(runtime_id):<15} {'ok' if availability.ok else 'no':<3} {one_line(availability.reason)}"
        )
    for fault in probed.faults:
        lines.append(f"  fault before it answered: {fault}")
    return lines, None
