"""geoloc_ros.outputs"""
