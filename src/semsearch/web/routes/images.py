"""Indexed images by id: the record, a thumbnail, the full file, and words that describe it.
Images are only ever served by id, never by a path the client gives."""

from __future__ import annotations

import io

from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse, Response

from semsearch.errors import BadImageError
from semsearch.web.deps import ImageFile, Web
from semsearch.web.schemas import ImageOut, TagOut, binary
from semsearch.web.security import same_site

router = APIRouter()

JPEG = binary("image/jpeg", "a JPEG")
IMAGE = binary("image/*", "the image file, or a PNG of it")


@router.get("/api/images/{image_id}", summary="One image's record")
def image(image_id: int, web: Web) -> ImageOut:
    record = web.session.store.image(image_id)
    return ImageOut.of(record, record.label)


@router.get("/api/images/{image_id}/thumbnail", summary="A JPEG preview, by image id",
            response_class=Response, responses=JPEG)
def thumbnail(record: ImageFile, web: Web, size: int = Query(160)) -> Response:
    from semsearch.thumbnails import thumbnail as make

    data = make(record, size, web.session.cache_dir, web.config.max_pixels)
    return Response(data, media_type="image/jpeg",
                    headers={"Cache-Control": "private, max-age=3600"})


@router.get("/api/images/{image_id}/file", summary="The full image, by image id",
            response_class=Response, responses=IMAGE)
def full_image(record: ImageFile, web: Web) -> Response:
    media = _browser_type(record.path)
    if media is None:  # a format browsers cannot show (TIFF): send it as PNG
        from semsearch.images import open_image

        buffer = io.BytesIO()
        open_image(record.path, max_pixels=web.config.max_pixels).image.save(buffer, "PNG")
        return Response(buffer.getvalue(), media_type="image/png")
    return FileResponse(record.path, media_type=media,
                        headers={"X-Content-Type-Options": "nosniff"})


@router.get("/api/images/{image_id}/tags", summary="Words that describe an image",
            dependencies=[Depends(same_site)])
def tags(image_id: int, web: Web, k: int = Query(5, ge=1, le=50)) -> list[TagOut]:
    from semsearch.query.words import fresh_image_tags

    return [TagOut(word=tag.word, score=tag.score, confident=tag.confident)
            for tag in fresh_image_tags(web.session, image_id, k)]


_BROWSER_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif",
                  "WEBP": "image/webp", "BMP": "image/bmp"}


def _browser_type(path: str) -> str | None:
    """Gives the media type a browser shows the file as, or None for a format it cannot."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return _BROWSER_TYPES.get(im.format or "")
    except (OSError, ValueError) as exc:
        raise BadImageError(path, f"cannot be read: {exc}") from None


