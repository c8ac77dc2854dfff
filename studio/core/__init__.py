"""Pure data and image logic (numpy, Pillow, OpenCV). Never imports Qt or torch."""
