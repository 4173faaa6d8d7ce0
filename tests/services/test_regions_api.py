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


async def test_prompted_masks_answer_every_prompt(clients: ServiceClients) -> None:
    from spotdiff.protocol import Box
    from spotdiff.protocol.regions import Prompt, PromptedRequest

    request = PromptedRequest(
        image=png_b64(noise_image(96, 80, 5)),
        prompts=[
            Prompt(box=Box(x1=10, y1=10, x2=50, y2=40)),
            Prompt(points=[(30.0, 30.0), (70.0, 60.0)], labels=[1, 0]),
        ],
        return_masks=True,
    )
    response = await clients.regions.prompted(request)
    assert [region.prompt for region in response.regions] == [0, 1]
    for region in response.regions:
        assert region.mask is not None and region.mask.size == [80, 96]
        assert sum(region.mask.counts) == 80 * 96  # the RLE covers the image
        if region.box is not None:
            assert 0 <= region.box.x1 < region.box.x2 <= 96 and 0 <= region.box.y1 < region.box.y2 <= 80
            assert region.area > 0


async def test_proposal_options_and_masks_per_request(clients: ServiceClients) -> None:
    response = await clients.regions.http.post(
        "/v1/proposals",
        json={"image": png_b64(noise_image(64, 64, 1)), "options": {"points_per_side": 2}, "return_masks": True},
    )
    assert response.status_code == 200
    for proposal in response.json()["proposals"]:
        assert sum(proposal["mask"]["counts"]) == 64 * 64


@pytest.mark.parametrize(
    "prompt",
    [{}, {"points": [[1, 1]], "labels": [1, 0]}, {"points": [[1, 1]], "labels": [2]}, {"points": [[500, 1]]}],
)
async def test_bad_prompts_are_422(clients: ServiceClients, prompt: dict) -> None:
    response = await clients.regions.http.post(
        "/v1/prompted", json={"image": png_b64(noise_image(32, 32, 0)), "prompts": [prompt]}
    )
    assert response.status_code == 422


def test_the_dtype_setting_is_the_encoders_dtype(settings) -> None:  # type: ignore[no-untyped-def]
    """SAM's image encoder (its weights and its time) runs in the configured dtype; the decoder stays float32."""
    import torch

    from services.regions.model import RegionsModel

    model = RegionsModel(settings.regions.model_copy(update={"dtype": "bfloat16"}))
    model.load()
    model.warmup()  # both modes answer
    assert model.info().dtype == "bfloat16"
    assert next(model.sam.image_encoder.parameters()).dtype == torch.bfloat16
    assert next(model.sam.mask_decoder.parameters()).dtype == torch.float32
