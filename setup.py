"""ament_python / pip set-up for ros_ncal (see README for both worlds)."""
import os
from glob import glob

from setuptools import find_packages, setup

PACKAGE = 'ros_ncal'


def config_tree():
    """config/ and its sub-folders (nclr/, models/, finetune/, datasets/ ...) -> share/ros_ncal/config/..."""
    out = []
    for root, _dirs, files in os.walk('config'):
        picked = [os.path.join(root, f) for f in files if f.endswith(('.yaml', '.rviz'))]
        if picked:
            out.append((os.path.join('share', PACKAGE, root), sorted(picked)))
    return out


setup(
    name=PACKAGE,
    version='0.1.0',
    # ros_ncal/assets: the packaged checkpoints (package_data below) and where they are (its __init__.py)
    packages=find_packages(exclude=['test', 'test.*', 'bench', 'bench.*']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + PACKAGE]),
        ('share/' + PACKAGE, ['package.xml']),
        ('share/' + PACKAGE + '/launch', glob('launch/*.py')),
    ] + config_tree(),
    package_data={'ros_ncal.assets': ['*.pt']},
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='ros_ncal developers',
    maintainer_email='dev@ros-ncal.invalid',
    description='2D-3D neural calibration (NCLR) for ROS 2: collector, calibrator, segmenter, detector.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'ncal = ros_ncal.cli:entry',
            'collector = ros_ncal.nodes.collector:main',
            'calibrator = ros_ncal.nodes.calibrator:main',
            'segmenter = ros_ncal.nodes.segmenter:main',
            'detector = ros_ncal.nodes.detector:main',
            'kitti_player = ros_ncal.nodes.player:main',
            'extrinsic_publisher = ros_ncal.nodes.extrinsic_publisher:main',
        ],
    },
)
