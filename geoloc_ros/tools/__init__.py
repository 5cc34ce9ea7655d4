"""geoloc_ros.tools"""
