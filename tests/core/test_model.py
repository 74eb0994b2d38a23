"""tt.Model and the tree-wide free functions: every layer found, states saved and loaded."""

import copy
import pickle

import pytest
import torch
from torch import nn

import tracetorch as tt


class Inner(tt.Model):
    def __init__(self):
        super().__init__()
        self.cells = nn.ModuleList([tt.snn.Decay(4, 0.6), tt.rnn.MiniGRU(4, 4)])

    def forward(self, x):
        for cell in self.cells:
            x = cell(x)
        return x


class Outer(tt.Model):
    """Layers inside Sequential, ModuleList, ModuleDict and a nested tt.Model."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), tt.snn.Decay(4, 0.9))
        self.inner = Inner()
        self.heads = nn.ModuleDict({"out": tt.snn.Decay(4, 0.5, beta_rank=0)})

    def forward(self, x):
        return self.heads["out"](self.inner(self.net(x)))


ALL_STATES = {"net.2.mem", "inner.cells.0.mem", "inner.cells.1.H", "heads.out.mem"}


def run(model, xs):
    return torch.stack([model(x) for x in xs])


def test_layers_found_at_any_depth():
    paths = [path for path, _ in tt.layers(Outer())]
    assert paths == ["net.2", "inner.cells.0", "inner.cells.1", "heads.out"]


def test_zero_and_detach_reach_every_layer():
    model = Outer()
    run(model, torch.rand(3, 2, 3))
    assert set(model.save_states()) == ALL_STATES
    model.detach_states()
    assert all(
        layer.__dict__[n].grad_fn is None
        for _, layer in tt.layers(model)
        for n in layer.state_names
    )
    model.zero_states()
    assert model.save_states() == {}


def test_free_functions_on_a_plain_module():
    plain = nn.Sequential(nn.Linear(3, 4), tt.snn.Decay(4), nn.Sequential(tt.rnn.MiniGRU(4, 2)))
    plain(torch.rand(2, 3))
    assert set(tt.save_states(plain)) == {"1.mem", "2.0.H"}
    tt.detach_states(plain)
    assert plain[1].mem.grad_fn is None
    tt.TTcompile(plain)
    assert "beta" in dict(plain[1].named_buffers())
    tt.TTdecompile(plain)
    assert "raw_beta" in dict(plain[1].named_parameters())
    tt.zero_states(plain)
    assert plain[1].mem is None and plain[2][0].H is None


def test_a_layer_on_its_own_is_its_own_root():
    layer = tt.snn.Decay(2)
    layer(torch.rand(1, 2))
    assert set(tt.save_states(layer)) == {"mem"}


def test_save_load_gives_an_identical_continuation():
    torch.manual_seed(0)
    model = Outer()
    twin = Outer()
    twin.load_state_dict(model.state_dict())
    xs = torch.randn(8, 2, 3)
    run(model, xs[:4])
    saved = model.save_states()
    expected = run(model, xs[4:])
    twin.load_states(saved)
    torch.testing.assert_close(run(twin, xs[4:]), expected, rtol=0, atol=0)


def test_saved_states_are_snapshots():
    model = Outer()
    run(model, torch.rand(2, 2, 3))
    saved = model.save_states()
    assert all(t.grad_fn is None for t in saved.values())
    before = {k: v.clone() for k, v in saved.items()}
    run(model, torch.rand(2, 2, 3))
    assert all(torch.equal(saved[k], before[k]) for k in saved)


def test_load_states_follows_the_model_dtype():
    model = Outer()
    run(model, torch.rand(2, 2, 3))
    saved = model.save_states()
    model.to(torch.float64)
    model.load_states(saved)
    assert model.net[2].mem.dtype == torch.float64


def _live(model):
    return {k: v.clone() for k, v in model.save_states().items()}


@pytest.mark.parametrize(
    ("edit", "error", "message"),
    [
        (lambda s: s.pop("inner.cells.1.H"), ValueError, r"missing: \['inner.cells.1.H'\]"),
        (
            lambda s: s.update({"net.7.mem": torch.zeros(2, 4)}),
            ValueError,
            r"unknown: \['net.7.mem'\]",
        ),
        (
            lambda s: s.update({"heads.out.mem": torch.zeros(2, 5)}),
            ValueError,
            "expected 4 features at dim",
        ),
        (
            lambda s: s.update({"net.2.mem": [[0.0] * 4] * 2}),
            TypeError,
            "expected a tensor, got list",
        ),
        (
            lambda s: s.update({"inner.cells.0.mem": torch.tensor(1.0)}),
            ValueError,
            "inner.cells.0.mem",
        ),
    ],
)
def test_bad_load_states_loads_nothing(edit, error, message):
    model = Outer()
    run(model, torch.rand(2, 2, 3))
    states = _live(model)
    states = {k: torch.full_like(v, 7.0) for k, v in states.items()}
    states_before = _live(model)
    edit(states)
    with pytest.raises(error, match=message):
        model.load_states(states)
    after = _live(model)
    assert after.keys() == states_before.keys()
    assert all(torch.equal(after[k], states_before[k]) for k in after)


def test_states_of_one_layer_must_share_a_shape():
    class Two(tt.snn.Layer):
        def __init__(self):
            super().__init__(2)
            self._initialize_state("a")
            self._initialize_state("b")

    layer = Two()
    with pytest.raises(ValueError, match="differs from 'a'"):
        tt.load_states(layer, {"a": torch.zeros(3, 2), "b": torch.zeros(4, 2)})
    assert layer.a is None and layer.b is None


def test_non_strict_loads_the_matching_keys_only():
    model = Outer()
    model.load_states({"net.2.mem": torch.ones(2, 4), "elsewhere.mem": torch.ones(1)}, strict=False)
    assert torch.equal(model.net[2].mem, torch.ones(2, 4))
    assert model.inner.cells[0].mem is None


def test_load_states_rejects_a_non_mapping():
    with pytest.raises(TypeError, match="expected a mapping of tensors, got list"):
        Outer().load_states([torch.zeros(1)])


@pytest.mark.filterwarnings("ignore:.*TTcompile\\(\\)d layer:UserWarning")  # baked on purpose
def test_compile_decompile_round_trip_on_a_model():
    torch.manual_seed(1)
    model = Outer()
    xs = torch.randn(6, 2, 3)
    model.zero_states()
    reference = run(model, xs)
    model.TTcompile()
    model.TTcompile()
    model.zero_states()
    torch.testing.assert_close(run(model, xs), reference, atol=1e-6, rtol=0)
    model.TTdecompile()
    model.TTdecompile()
    model.zero_states()
    torch.testing.assert_close(run(model, xs), reference, atol=1e-6, rtol=0)


def test_model_to_dtype_moves_live_states():
    model = Outer()
    run(model, torch.rand(2, 2, 3))
    model.to(torch.float64)
    assert all(v.dtype == torch.float64 for v in model.save_states().values())
    assert run(model, torch.rand(2, 2, 3, dtype=torch.float64)).dtype == torch.float64


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_model_to_cuda_moves_live_states():
    model = Outer()
    run(model, torch.rand(2, 2, 3))
    model.to("cuda")
    assert all(v.is_cuda for v in model.save_states().values())
    assert run(model, torch.rand(2, 2, 3, device="cuda")).is_cuda
    model.cpu()
    assert all(not v.is_cuda for v in model.save_states().values())


def test_torch_compile_fullgraph_over_several_timesteps():
    torch.manual_seed(0)
    model = Outer()
    twin = Outer()
    twin.load_state_dict(model.state_dict())
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    xs = torch.randn(5, 2, 3)
    torch.testing.assert_close(run(compiled, xs), run(twin, xs))
    assert model.net[2].mem.shape == (2, 4)  # the states live in the original layers
    run(compiled, xs).sum().backward()
    assert model.net[0].weight.grad is not None


# Inductor's first import loads torch.utils.mkldnn, whose ScriptModules use the deprecated
# @torch.jit.script_method (torch 2.13): PyTorch's warning, not one about this code.
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method`:DeprecationWarning")
def test_torch_compile_inductor_on_cpu():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), tt.snn.Decay(4), tt.rnn.MiniGRU(4, 2))
    reference = nn.Sequential(nn.Linear(3, 4), tt.snn.Decay(4), tt.rnn.MiniGRU(4, 2))
    reference.load_state_dict(model.state_dict())
    compiled = torch.compile(model, fullgraph=True)
    xs = torch.randn(4, 2, 3)
    torch.testing.assert_close(run(compiled, xs), run(reference, xs))


def test_attribute_lookup_finds_parameters_buffers_and_submodules():
    # tt.Model looks in _modules first; the answers must be nn.Module's own.
    model = Outer()
    model.scale = nn.Parameter(torch.ones(2))
    model.register_buffer("offset", torch.zeros(2))
    model.register_module("absent", None)
    assert model.scale is model._parameters["scale"]
    assert model.offset is model._buffers["offset"]
    assert model.net is model._modules["net"]
    assert model.absent is None
    with pytest.raises(AttributeError, match="'Outer' object has no attribute 'nothing'"):
        _ = model.nothing
    model.net = nn.Identity()  # reassigning and deleting go through nn.Module as before
    assert isinstance(model.net, nn.Identity)
    del model.net
    assert not hasattr(model, "net")
    model.net = nn.Parameter(torch.ones(1))  # the name now belongs to a parameter
    assert model.net is model._parameters["net"]
    for twin in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert isinstance(twin.inner, Inner) and twin.net.shape == (1,)


def test_torch_compile_fullgraph_in_inference_mode():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), tt.snn.Decay(4), tt.snn.LIF(4, dim=-1))
    reference = nn.Sequential(nn.Linear(3, 4), tt.snn.Decay(4), tt.snn.LIF(4, dim=-1))
    reference.load_state_dict(model.state_dict())
    tt.TTcompile(model)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    xs = 3 * torch.randn(6, 2, 3)
    with torch.inference_mode():
        torch.testing.assert_close(run(compiled, xs), run(reference, xs))
