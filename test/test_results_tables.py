"""docs/results.md's generated tables (scripts/results_tables.py) are current and come from the JSON."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'scripts'))

import results_tables as rt  # noqa: E402


def test_generated_tables_in_results_md_are_current():
    assert rt.render(check=True) == [], 'run: .venv/bin/python scripts/results_tables.py render'


def test_a_changed_run_changes_its_table_and_only_render_writes(tmp_path):
    md = tmp_path / 'results.md'
    md.write_text('intro\n<!-- table:rigs -->\nstale\n<!-- /table -->\nend\n')
    res = tmp_path / 'results'
    shutil.copytree(REPO / 'docs' / 'results', res)
    assert rt.render(md, res, check=True) == ['rigs'] and 'stale' in md.read_text()
    assert rt.render(md, res) == ['rigs']
    text = md.read_text()
    assert 'stale' not in text and text.startswith('intro\n') and text.endswith('<!-- /table -->\nend\n')
    d = json.loads((res / 'rigs.json').read_text())
    d['rows'][0]['after'] = {'rot_deg': 0.5, 'trans_cm': 2.0}
    (res / 'rigs.json').write_text(json.dumps(d))
    assert rt.render(md, res, check=True) == ['rigs']
    rt.render(md, res)
    assert '| 0.50 / 2.0 | yes |' in md.read_text()


def test_collect_keeps_the_summaries_of_an_eval_report(tmp_path):
    report = {'preset_name': 'calib', 'preset': {'max_deg': 10.0, 'max_m': 0.5}, 'n_samples': 2,
              'config': {'trials': 3}, 'records': [{'big': 'dropped'}] * 100,
              'summary': {'none': {'n': 6, 'rre_median_deg': 5.0, 'rre_mean_deg': 5.5, 'rte_median_cm': 30.0,
                                   'rte_mean_cm': 29.0, 'rot_success_rate': 0.0, 'runtime_mean_s': 0.0}},
              'sequence': {'passes': 2, 'n_sequences': 4, 'summary': {'none': {
                  'n': 4, 'rre_median_deg': 5.0, 'rre_mean_deg': 5.0, 'rte_median_cm': 9.0, 'rte_mean_cm': 9.0,
                  'success_rate': 0.25}}}}
    src = tmp_path / 'report.json'
    src.write_text(json.dumps(report))
    rt.collect(src, 'x', 'ncal eval-calib ...', out_dir=tmp_path / 'out')
    single = json.loads((tmp_path / 'out' / 'x.json').read_text())
    assert 'records' not in single and single['summary'] == report['summary']
    table = rt.render_table(single)
    assert '| none | 6 | 5.00 / 5.50 | 30.0 | 0 % | 0.000 |' in table and '2 frames x 3 trials' in table
    seq = rt.render_table(json.loads((tmp_path / 'out' / 'x_sequences.json').read_text()))
    assert '| none | 4 | 5.00 / 5.00 | 9.0 / 9.0 | 25 % |' in seq
    # a report without thresholds counted sequence success at 2 deg / 20 cm (before 2026-12-03): said so
    assert 'success < 2 deg and < 20 cm' in seq
    report['sequence'].update(success_rre_deg=1.0, success_rte_m=0.1)
    src.write_text(json.dumps(report))
    rt.collect(src, 'y', 'ncal eval-calib ...', out_dir=tmp_path / 'out')
    assert 'success < 1 deg and < 10 cm' in rt.render_table(json.loads((tmp_path / 'out' / 'y_sequences.json').read_text()))


def test_collect_rigs_reads_both_folder_layouts(tmp_path):
    """eval_real.sh writes rig_<bag>_s<seed>/, a hand-run sweep <bag>_s<seed>/; other folders are passed over."""
    truth = {'truth': {'nominal_error': {'rot_deg': 3.0, 'trans_cm': 15.0},
                       'calibrated_error': {'rot_deg': 1.0, 'trans_cm': 14.0}},
             'frames': [{'frame_id': 'a'}, {'frame_id': 'b'}, {'frame_id': 'a'}]}
    for folder in ('rig_dgp_s0', 'opencalib_1_s2', 'notes'):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / 'report.json').write_text(json.dumps(truth))
    d = json.loads(rt.collect_rigs(tmp_path, 'r', 'cmd', out_dir=tmp_path / 'out').read_text())
    assert [(r['bag'], r['seed'], r['frames']) for r in d['rows']] == [('opencalib_1', 2, 2), ('dgp', 0, 2)]
    assert '| dgp | 0 | 2 | 3.00 / 15.0 | 1.00 / 14.0 | yes |' in rt.render_table(d)
