"""Straw-burning fire detection: tower video, thermal frames and satellite hotspots, fused into fire events.

Where a frame goes: ``worker`` (MQTT ``ganzhi/v1/{code}/frame``) → ``frames.decode`` → ``video`` or
``thermal`` detector (per camera and preset) → ``geometry`` (bearing, ground position) → ``store`` and
``fusion`` (one fire event per fire, triangulated across towers, joined with ``firms`` satellite points) →
the alert sink (``alerts.fire``) for the environment bureau and the county.
"""
