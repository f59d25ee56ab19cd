"""DNG decoding (raw input, colour metadata, demosaicing) and atomic image writing.

    from isp.io import read_dng, write_image
    img = read_dng("photo.dng", crop=[0, 0, 384, 512])   # RawImage: raw (H, W, 3), illum, ccm, cfa, metadata...
    write_image("out.png", srgb)                         # 16-bit PNG (or .jpg), written atomically
"""
from isp.io.demosaic import demosaic_menon2007
from isp.io.dng import RawImage, read_dng
from isp.io.image import apply_orientation, read_image, write_image

__all__ = ["RawImage", "read_dng", "demosaic_menon2007", "write_image", "read_image", "apply_orientation"]
