"""geoloc_ros.data"""
