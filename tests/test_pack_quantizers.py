"""bnn.pack asks each layer's quantizers whether they pack to bit planes, and refuses in one line."""

import pytest

from bnn.config import RunConfig
from bnn.errors import BnnError
from bnn.model import build_model
from bnn.pack import pack_model


@pytest.mark.parametrize("flags, match", [
    ({"weight_quantizer": "uniform:bits=2"}, r"layer fc2: weight quantizer uniform:bits=2,step=0.5,relative=false "
                                             r"declares no bit-plane packing"),
    ({"weight_quantizer": "scaled_sign"}, r"layer fc2: weight quantizer scaled_sign packs as sign planes times a "
                                          r"float scale"),
    ({"activation_quantizer": "uniform:bits=3"}, r"layer fc1: activation quantizer uniform:bits=3"),
])
def test_quantizers_without_bit_planes_are_refused_in_one_line(flags, match):
    config = RunConfig(data_set="MNIST", conv=[], fc=[8, 8], **flags).resolve()
    with pytest.raises(BnnError, match=match) as info:
        pack_model(build_model(config))
    assert "\n" not in str(info.value)


def test_sign_and_ternary_still_pack():
    for flags in ({}, {"weight_quantizer": "ternary:threshold=0.05", "activation_quantizer": "ternary:threshold=0.2"}):
        meta, arrays = pack_model(build_model(RunConfig(data_set="MNIST", conv=[], fc=[8, 8], **flags).resolve()))
        assert [layer["name"] for layer in meta["layers"]] == ["fc1", "fc2", "out"]
        assert "fc2.w_sign" in arrays
