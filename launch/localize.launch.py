"""Launch localize_node (geoloc_ros) with the packaged parameters.

    ros2 launch geoloc_ros localize.launch.py map:=/data/area.tif weights:=default \
        image:=/camera/image_raw camera_info:=/camera/camera_info odom:=/mavros/local_position/odom \
        initial_fix:=/mavros/global_position/global

Arguments map onto node parameters (map, weights, device, use_sim_time, the four input
topics) or the node's namespace; everything else comes from params_file
(config/localize.yaml by default, every parameter documented there).
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue


def generate_launch_description():
    share = get_package_share_directory("geoloc_ros")
    default_params = os.path.join(share, "config", "localize.yaml")

    args = [
        DeclareLaunchArgument("map", description="GeoTIFF/COG orthophoto (node parameter 'map')"),
        DeclareLaunchArgument("weights", default_value="default",
                              description="AMCF-Net weights: 'default' (packaged), a path, or 'none'"),
        DeclareLaunchArgument("device", default_value="auto", description="auto, cpu, cuda or cuda:N"),
        DeclareLaunchArgument("params_file", default_value=default_params,
                              description="YAML with the node parameters"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="use /clock (bag replay)"),
        DeclareLaunchArgument("image", default_value="/camera/image_raw", description="camera image topic"),
        DeclareLaunchArgument("camera_info", default_value="/camera/camera_info", description="CameraInfo topic"),
        DeclareLaunchArgument("odom", default_value="/odom", description="odometry topic"),
        DeclareLaunchArgument("initial_fix", default_value="/gps/fix",
                              description="NavSatFix used until GPS denial ('' = none)"),
    ]

    node = Node(
        package="geoloc_ros",
        executable="localize_node",
        name="localize_node",
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        emulate_tty=True,
        parameters=[
            LaunchConfiguration("params_file"),
            {
                "map": LaunchConfiguration("map"),
                "weights": ParameterValue(LaunchConfiguration("weights"), value_type=str),
                "device": LaunchConfiguration("device"),
                "use_sim_time": ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool),
                "image_topic": LaunchConfiguration("image"),
                "camera_info_topic": LaunchConfiguration("camera_info"),
                "odom_topic": LaunchConfiguration("odom"),
                "initial_fix_topic": ParameterValue(LaunchConfiguration("initial_fix"), value_type=str),
            },
        ],
    )
    return LaunchDescription(args + [node])
