import pytest

from spotdiff.clients import ServiceClients

from .helpers import noise_image, png_b64


async def test_proposals_are_boxes_inside_the_image(clients: ServiceClients) -> None:
    response = await clients.regions.proposals(png_b64(noise_image(160, 96, 3)))
    assert (response.width, response.height) == (160, 96)
    for proposal in response.proposals:
        box = proposal.box
        assert 0 <= box.x1 < box.x2 <= 160 and 0 <= box.y1 < box.y2 <= 96
        assert proposal.area > 0


async def test_info_names_the_model_type_and_amg_settings(clients: ServiceClients) -> None:
    info = await clients.regions.info()
    assert info.extra["model_type"] == "spotdiff_tiny"
    assert info.extra["amg"]["points_per_side"] == 4


@pytest.mark.parametrize(("image", "status"), [("bm90IGFuIGltYWdl", 400), ("", 422)])
async def test_bad_images_are_4xx(clients: ServiceClients, image: str, status: int) -> None:
    response = await clients.regions.http.post("/v1/proposals", json={"image": image})
    assert response.status_code == status
