"""geoloc_ros.model"""
