"""geoloc_ros.geo"""
