"""geoloc_ros.ros"""
