"""The kernel's metadata: what `bundle` writes beside the kernel, today's GPU shapes pinned to their image, and
retired, TPU and unknown shapes refused by name."""

import json
import re

import pytest

from marsseg.errors import UserError
from marsseg.kaggle.bundle import (
    ACCELERATOR,
    ACCELERATORS,
    KERNEL_PATH,
    METADATA_PATH,
    kernel_metadata,
    metadata_text,
    write_kernel,
)
from tests.helpers.child_process import ROOT

PACKAGE = ROOT / "src" / "marsseg"


def test_committed_metadata_is_what_bundle_writes_and_passes_the_rules():
    from marsseg.kaggle.rules import check_metadata

    committed = (ROOT / METADATA_PATH).read_text()
    assert committed == metadata_text(), "kernel-metadata.json is stale: run `make bundle`"
    meta = json.loads(committed)
    assert meta["machine_shape"] == ACCELERATOR == "NvidiaTeslaT4" and meta["enable_gpu"] is True
    assert meta["code_file"] == KERNEL_PATH.as_posix() and meta["id"] == "{username}/mars-segmentation-kit"
    assert check_metadata(meta) == []


TODAYS_SHAPES = {"NvidiaTeslaT4", "NvidiaL4", "NvidiaL4X1", "NvidiaTeslaA100", "NvidiaH100", "NvidiaRtxPro6000"}


def test_todays_gpu_shapes_are_accepted_and_pinned_to_their_image():
    from marsseg.kaggle.rules import check_metadata

    assert set(ACCELERATORS) == TODAYS_SHAPES
    for shape in TODAYS_SHAPES:
        meta = kernel_metadata(shape)
        assert meta["machine_shape"] == shape and check_metadata(meta) == []
        assert meta["docker_image_pinning_type"] == "original"
        assert {k: v for k, v in meta.items() if k != "machine_shape"} == {
            k: v for k, v in kernel_metadata().items() if k != "machine_shape"
        }


@pytest.mark.parametrize(
    "shape, says",
    [
        ("NvidiaTeslaP100", "is retired (Kaggle would silently run it on NvidiaTeslaT4); use NvidiaTeslaT4"),
        ("Gpu", "is retired"),
        ("Tpu1VmV38", "is retired (Kaggle would silently run it on TpuV5E8); use NvidiaTeslaT4"),
        ("TpuV5E8", "is a TPU; the kit trains on GPUs: use NvidiaTeslaT4"),
        ("NvidiaTeslaK80", "is not one of today's GPU shapes"),
    ],
)
def test_retired_tpu_and_unknown_shapes_are_refused_in_metadata_and_by_name(shape, says):
    from marsseg.kaggle.bundle import check_accelerator
    from marsseg.kaggle.rules import check_metadata

    with pytest.raises(UserError, match=re.escape(says)):
        kernel_metadata(shape)
    with pytest.raises(UserError, match=re.escape(says)):
        check_accelerator(shape)
    found = check_metadata({**kernel_metadata(), "machine_shape": shape})
    assert len(found) == 1 and says in found[0].reason


def test_metadata_without_an_image_pinning_is_refused():
    from marsseg.kaggle.rules import check_metadata

    meta = {k: v for k, v in kernel_metadata().items() if k != "docker_image_pinning_type"}
    (found,) = check_metadata(meta)
    assert "docker_image_pinning_type is None" in found.reason and "'original'" in found.reason
    assert check_metadata({**meta, "docker_image_pinning_type": "latest"}) == []


def test_writing_the_kernel_to_its_default_path_writes_its_metadata_too(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    lines = []
    write_kernel(KERNEL_PATH, PACKAGE, log=lines.append)
    assert (tmp_path / KERNEL_PATH).is_file() and (tmp_path / METADATA_PATH).read_text() == metadata_text()
    assert any("machine_shape NvidiaTeslaT4" in line for line in lines)
    (tmp_path / METADATA_PATH).unlink()
    write_kernel(tmp_path / "elsewhere.py", PACKAGE, log=lines.append)  # another path: no metadata beside it
    assert not (tmp_path / METADATA_PATH).exists()
