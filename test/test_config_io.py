"""One set of rules for every typed YAML config (ros_ncal.config_io)."""
from dataclasses import dataclass, field

import pytest
import yaml

from ros_ncal.config_io import (coerce_param, dataclass_from_dict, deep_merge, load_yaml_with_base, param,
                                param_kind, read_yaml_section)


@dataclass
class Inner:
    size: int = 3
    scale: float = 1.0
    on: bool = True


@dataclass
class Outer:
    name: str = 'x'
    inner: Inner = field(default_factory=Inner)
    window: tuple = (1.0, 2.0)
    opts: dict = field(default_factory=lambda: {'a': 1, 'b': 2})
    optional: object = None


def test_nested_build_and_coercion():
    cfg = dataclass_from_dict(Outer, {'inner': {'size': 4.0, 'scale': 2}, 'window': [3, 4], 'optional': [1]}, 'o')
    assert cfg.inner == Inner(4, 2.0, True) and type(cfg.inner.size) is int and type(cfg.inner.scale) is float
    assert cfg.window == (3, 4) and cfg.optional == [1] and cfg.opts == {'a': 1, 'b': 2}
    assert dataclass_from_dict(Outer, None, 'o') == Outer()
    assert dataclass_from_dict(Outer, {'opts': {'b': 5}}, 'o').opts == {'b': 5}
    assert dataclass_from_dict(Outer, {'opts': {'b': 5}}, 'o', merge_dict_defaults=True).opts == {'a': 1, 'b': 5}
    exact = dataclass_from_dict(Outer, {'window': [3, 4]}, 'o', exact_tuple_length=True)
    assert exact.window == (3.0, 4.0) and all(type(v) is float for v in exact.window)


@pytest.mark.parametrize('data, message', [
    ({'inner': {'sise': 1}}, r"o\.inner: unknown key\(s\) \['sise'\]; known: \['on', 'scale', 'size'\]"),
    ({'inner': {'size': 2.5}}, r'o\.inner\.size: expected an integer'),
    ({'inner': {'scale': '1e-3'}}, r'o\.inner\.scale: expected a number'),   # PyYAML reads 1e-3 as a string
    ({'inner': {'size': True}}, r'o\.inner\.size: expected a number'),
    ({'inner': {'on': 'yes please'}}, r'o\.inner\.on: expected true/false'),
    ({'inner': [1, 2]}, r'o\.inner: expected a mapping'),
    ({'window': 3}, r'o\.window: expected a list'),
])
def test_bad_values_name_their_path(data, message):
    with pytest.raises(ValueError, match=message):
        dataclass_from_dict(Outer, data, 'o')


def test_tuple_length_is_checked_when_asked():
    with pytest.raises(ValueError, match='expected a list of 2 values'):
        dataclass_from_dict(Outer, {'window': [1, 2, 3]}, 'o', exact_tuple_length=True)
    assert dataclass_from_dict(Outer, {'window': [1, 2, 3]}, 'o').window == (1, 2, 3)


def test_yaml_inheritance_and_sections(tmp_path):
    assert deep_merge({'a': {'x': 1, 'y': 2}, 'b': 1}, {'a': {'y': 3}, 'c': 4}) == {'a': {'x': 1, 'y': 3}, 'b': 1, 'c': 4}
    (tmp_path / 'base.yaml').write_text(yaml.safe_dump({'train': {'lr': 0.1, 'steps': 5}, 'net': {'w': 1}}))
    (tmp_path / 'mid.yaml').write_text(yaml.safe_dump({'_base_': 'base.yaml', 'train': {'steps': 7}}))
    (tmp_path / 'top.yaml').write_text(yaml.safe_dump({'_base_': 'mid.yaml', 'net': {'w': 2}}))
    assert load_yaml_with_base(tmp_path / 'top.yaml') == {'train': {'lr': 0.1, 'steps': 7}, 'net': {'w': 2}}
    (tmp_path / 'loop.yaml').write_text(yaml.safe_dump({'_base_': 'loop.yaml'}))
    with pytest.raises(ValueError, match='too deep'):
        load_yaml_with_base(tmp_path / 'loop.yaml')
    with pytest.raises(FileNotFoundError):
        load_yaml_with_base(tmp_path / 'missing.yaml')
    assert read_yaml_section(tmp_path / 'base.yaml', 'train') == {'lr': 0.1, 'steps': 5}
    assert read_yaml_section(tmp_path / 'base.yaml', 'absent') == {}
    (tmp_path / 'list.yaml').write_text('- 1\n- 2\n')
    with pytest.raises(ValueError, match='top level'):
        read_yaml_section(tmp_path / 'list.yaml', 'x')


def test_every_shipped_config_still_loads():
    """The project's own YAML files under the shared rules."""
    from pathlib import Path

    from ros_ncal.calib import ClassicalCalibConfig, EvalConfig, FusionConfig
    from ros_ncal.commands.demo import load_demo_config
    from ros_ncal.data.synthetic import load_synthetic_config
    from ros_ncal.nclr.calibrator import NCLRInferenceConfig
    from ros_ncal.nclr.config import NCLRConfig
    from ros_ncal.train.finetune import load_finetune_config
    root = Path(__file__).resolve().parents[1] / 'config'
    for p in sorted((root / 'nclr').glob('*.yaml')):
        NCLRConfig.from_yaml(p)
    for p in sorted((root / 'finetune').glob('*.yaml')):
        if p.name != 'common.yaml':
            load_finetune_config(p)
    for p in sorted(root.glob('synthetic*.yaml')):
        load_synthetic_config(p)
    for p in (root / 'calib_eval.yaml', root / 'calib_eval_synthetic.yaml'):
        EvalConfig.from_yaml(p), ClassicalCalibConfig.from_yaml(p), FusionConfig.from_yaml(p)
        NCLRInferenceConfig.from_yaml(p)
    cfg, _ = load_demo_config(root / 'demo.yaml')
    assert [r.name for r in cfg.kitti.runs] == ['kitti_recorded', 'kitti_perturbed']
    assert ClassicalCalibConfig.from_yaml(root / 'calib_eval_synthetic.yaml').levels[0].search_translation
    assert not ClassicalCalibConfig.from_yaml(root / 'calib_eval.yaml').levels[0].search_translation


def test_required_fields_are_checked_and_typed():
    @dataclass
    class Bounds:
        max_deg: float
        max_m: float
        min_deg: float = 0.0
    b = dataclass_from_dict(Bounds, {'max_deg': 2, 'max_m': 0.1}, 'p')
    assert b == Bounds(2.0, 0.1) and type(b.max_deg) is float
    with pytest.raises(ValueError, match=r"p: missing required key\(s\) \['max_m'\]"):
        dataclass_from_dict(Bounds, {'max_deg': 2}, 'p')
    with pytest.raises(ValueError, match=r'p\.max_m: expected a number'):
        dataclass_from_dict(Bounds, {'max_deg': 2, 'max_m': 'far'}, 'p')


def test_to_jsonable_and_set_options_have_one_home():
    """The JSON conversion and the --set parser every command uses (ros_ncal.config_io)."""
    import json

    import numpy as np
    import torch

    from ros_ncal.config_io import parse_set_options, to_jsonable
    x = {1: (np.float32(0.5), np.int64(3), np.bool_(True)), 'nan': float('nan'), 'arr': np.arange(3),
         't': torch.tensor([1.5, float('inf')]), 's': 'text'}
    out = to_jsonable(x)
    assert out == {'1': [0.5, 3, True], 'nan': None, 'arr': [0, 1, 2], 't': [1.5, None], 's': 'text'}
    json.dumps(out, allow_nan=False)                   # strict JSON
    assert parse_set_options(['optim.steps=50', 'a.b.c=[1, 2]', 'flag=true']) == \
        {'optim': {'steps': 50}, 'a': {'b': {'c': [1, 2]}}, 'flag': True}
    with pytest.raises(ValueError, match='key.path=value'):
        parse_set_options(['no_equals'])


# ----------------------------------------------------------------------------- node parameters (no ROS)


@dataclass
class _NodeParams:
    rate: float = param(1.0, 'a rate', min=0.0)
    n: int = param(3, 'a count', min=1, max=10)
    on: bool = param(False, 'a switch')
    mode: str = param('a', 'a mode', choices=('a', 'b'))
    xs: list[float] = param(help='numbers', default_factory=list)
    names: list[str] = param(help='names', default_factory=list)
    inner: Inner = param(default_factory=Inner)


def test_node_parameter_fields_kinds_and_coercion():
    import dataclasses
    import typing
    hints = typing.get_type_hints(_NodeParams)
    kinds = {f.name: param_kind(hints[f.name]) for f in dataclasses.fields(_NodeParams)}
    assert kinds == {'rate': 'float', 'n': 'int', 'on': 'bool', 'mode': 'str', 'xs': 'float_list',
                     'names': 'str_list', 'inner': 'config'}
    meta = {f.name: f.metadata for f in dataclasses.fields(_NodeParams)}
    assert meta['n'] == {'help': 'a count', 'choices': None, 'min': 1, 'max': 10}
    assert meta['mode']['choices'] == ('a', 'b') and _NodeParams().xs == [] and _NodeParams().inner == Inner()
    with pytest.raises(TypeError, match='unsupported parameter type'):
        param_kind(dict)
    assert coerce_param('rate', 'float', 10) == 10.0 and isinstance(coerce_param('rate', 'float', 10), float)
    assert coerce_param('n', 'int', 4.0) == 4 and coerce_param('on', 'bool', True) is True
    assert coerce_param('xs', 'float_list', None) == [] and coerce_param('xs', 'float_list', [1, 2]) == [1.0, 2.0]
    assert coerce_param('names', 'str_list', ('a', 1)) == ['a', '1']
    for name, kind, value in (('n', 'int', 2.5), ('n', 'int', True), ('on', 'bool', 1), ('rate', 'float', True),
                              ('rate', 'float', float('nan')), ('mode', 'str', 3), ('xs', 'float_list', [1, float('inf')])):
        with pytest.raises(ValueError, match=f"parameter '{name}': expected"):
            coerce_param(name, kind, value)
