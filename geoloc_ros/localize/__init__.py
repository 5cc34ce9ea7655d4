"""geoloc_ros.localize"""
