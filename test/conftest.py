"""Test-session set-up: ROS network safety before anything imports rclpy (docs/design.md, "Network safety")."""
import os
import sys
from pathlib import Path

from ros_ncal.rosenv import apply_safe_ros_env
from ros_ncal.commands._domain import isolated_domain_id

# An isolated domain per test session (overridable by exporting ROS_DOMAIN_ID).
apply_safe_ros_env(domain_id=isolated_domain_id())
# One intra-op thread by default because this suite checks correctness only and its CI machine (2 cores) is
# shared: OpenMP threads of tiny ops mostly spin at barriers there. Not needed by the sparse engine any more
# (no scatter kernels, one parallel region per pass; docs/performance.md); test_sparse_conv.py sets 1, 2
# and all-core counts itself. Export OMP_NUM_THREADS to override.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get('NCAL_SHARED_DATA', REPO.parent / 'shared' / 'data'))
sys.path.insert(0, str(REPO / 'test'))


@pytest.fixture(scope='session')
def shared_data() -> Path:
    """../shared/data: real KITTI / SemanticKITTI / nuScenes frames (required, not optional)."""
    assert SHARED_DATA.is_dir(), f'shared data not found at {SHARED_DATA}; set NCAL_SHARED_DATA'
    return SHARED_DATA


@pytest.fixture(scope='session')
def kitti_dir(shared_data) -> Path:
    return shared_data / 'kitti_object'


# ----------------------------------------------------------------------------- markers
# `ros`: the test starts rclpy (a graph in this process, nodes, `ros2` / `ncal run` / `ncal demo` processes).
# `slow`: more than about 10 s on the 2-core CI machine. `pytest -m "not ros and not slow"` runs the fast
# library tests alone (registered in setup.cfg). A module that imports node_harness or calls rclpy.init() is
# marked `ros` automatically; the rest are listed here, by module or by test, so that one place says it.
ROS_MODULES = {'test_demo_perception', 'test_ros_tooling', 'test_upstream_ros_packages', 'test_runner',
               'test_ros_graph', 'test_soak', 'test_collector_kill'}
ROS_TESTS = {'test_demo.py::test_demo_synthetic_and_kitti_short', 'test_demo.py::test_demo_publisher_scenario_stage1',
             'test_demo.py::test_demo_real_drive_realtime_best_effort_short'}
SLOW_MODULES = {'test_demo_perception', 'test_soak', 'test_collector_kill', 'test_ros_tooling',
                'test_upstream_ros_packages', 'test_nclr_train', 'test_joint', 'test_calibrate_cmd',
                'test_nclr_real_data'}
# measured with `pytest -m "not ros and not slow" --durations=45` on the shared 2-core machine: 2.5 s or more
SLOW_TESTS = {
    'test_nclr_calibrator.py::test_shipped_calibrator_reduces_rotation_error_on_held_out_synthetic_frames',
    'test_backbones.py::test_minkunet14_tiny_trains_on_procedural_scenes',
    'test_backbones.py::test_minkunet_list_api_shapes_and_small_samples',
    'test_classical_calib.py::test_fast_path_gives_the_reference_estimate_on_a_real_frame',
    'test_shards.py::test_sigkill_mid_write_loses_at_most_the_sample_in_flight',
    'test_shards.py::test_sigkill_in_shard_durability_never_exposes_partial_shard',
    'test_safe_pickle.py::test_ncal_prepare_nuscenes_refuses_code_one_line_exit_2',
    'test_cli_errors.py::test_unknown_yaml_key_one_line_naming_file_and_key_exit_2',
    'test_finetune.py::test_cli_finetune_then_eval_and_label_efficiency_sweep',
    'test_finetune.py::test_seg_scratch_and_pretrained_loss_decreases_and_checkpoint_roundtrip',
    'test_finetune.py::test_det_finetune_loss_decreases',
    'test_finetune.py::test_panoptic_finetune_loss_decreases',
    'test_finetune.py::test_real_label_efficiency_protocol_end_to_end',
    'test_calib_eval.py::test_cli_sequence_protocol_and_nclr_section',
    'test_calib_eval.py::test_cli_writes_json_markdown_and_plot',
    'test_synthetic.py::test_default_config_frame',
    'test_synthetic.py::test_synth_command_writes_previews_and_readable_shards',
    'test_inspect.py::test_inspect_cli_on_prepared_datasets',
    'test_demo.py::test_synthetic_bag_wrong_nominal_truth_beside_and_cache',
}
_AUTO_ROS = {}


def _starts_rclpy(module) -> bool:
    name = module.__name__
    if name not in _AUTO_ROS:
        src = Path(module.__file__).read_text()
        _AUTO_ROS[name] = 'node_harness' in src or 'rclpy.init(' in src
    return _AUTO_ROS[name]


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = getattr(item, 'module', None)
        if module is None:
            continue
        name = module.__name__.rpartition('.')[2]
        test = f'{name}.py::{item.originalname}'
        if name in ROS_MODULES or test in ROS_TESTS or _starts_rclpy(module):
            item.add_marker(pytest.mark.ros)
        if name in SLOW_MODULES or test in SLOW_TESTS or test in ROS_TESTS:
            item.add_marker(pytest.mark.slow)


# ----------------------------------------------------------------------------- shared fixtures
@pytest.fixture
def ros_context():
    """A fresh rclpy context for one test, shut down afterwards (rclpy imported only by tests that use it)."""
    import rclpy
    ctx = rclpy.Context()
    rclpy.init(args=['test'], context=ctx)
    yield ctx
    if ctx.ok():
        rclpy.shutdown(context=ctx)


@pytest.fixture(scope='session')
def kitti_points(kitti_dir):
    """(N, 4) float32 x y z intensity of KITTI object training frame 000001."""
    from ros_ncal.data.kitti_files import read_velodyne
    return read_velodyne(kitti_dir / 'training' / 'velodyne' / '000001.bin')


@pytest.fixture
def single_thread():
    """One intra-op torch thread for the test (tests of many tiny ops; modules opt in with
    ``pytestmark = pytest.mark.usefixtures('single_thread')``)."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
