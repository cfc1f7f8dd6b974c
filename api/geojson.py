"""GeoJSON bodies (RFC 7946, WGS84) the API answers: a division with its boundary, terminals as points."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, create_model

from registry.models import Division, Terminal

Ring = list[list[float]]
"""A closed ring of [lon, lat] positions."""


class Polygon(BaseModel):
    type: Literal["Polygon"]
    coordinates: list[Ring] = Field(description="the outer ring, then any holes")


class MultiPolygon(BaseModel):
    type: Literal["MultiPolygon"]
    coordinates: list[list[Ring]]


class Point(BaseModel):
    type: Literal["Point"] = "Point"
    coordinates: list[float] = Field(min_length=2, max_length=2, description="[lon, lat]")


class DivisionFeature(BaseModel):
    type: Literal["Feature"] = "Feature"
    id: str = Field(description="the division's code")
    geometry: Polygon | MultiPolygon | None = Field(description="its boundary; null when none is known")
    properties: Division


TerminalProperties = create_model(
    "TerminalProperties", __doc__="A terminal's fields but its position (the point's coordinates).",
    **{key: (f.annotation, f) for key, f in Terminal.model_fields.items()
       if key not in {"lon", "lat"} and not f.exclude})
"""The ledger's terminal (``registry.models.Terminal``) less what the feature's geometry carries: one definition."""


class TerminalFeature(BaseModel):
    type: Literal["Feature"] = "Feature"
    id: str = Field(description="the terminal's city code")
    geometry: Point
    properties: TerminalProperties


class TerminalCollection(BaseModel):
    type: Literal["FeatureCollection"] = "FeatureCollection"
    features: list[TerminalFeature]


class TerminalCollectionPage(TerminalCollection):
    next: str | None = Field(description="pass as `after` for the next page; null on the last page")
    count: int | None = Field(description="total matches, when asked for with count=true")


def inline_schema(model: type[BaseModel]) -> dict:
    """The model's JSON schema with every ``$ref`` replaced by what it names: for a media type other than JSON,
    whose schema FastAPI does not collect into the document's components."""
    schema = model.model_json_schema(mode="serialization")
    definitions = schema.pop("$defs", {})

    def resolve(node: object) -> object:
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve(definitions[node["$ref"].rsplit("/", 1)[-1]])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    return resolve(schema)


def geojson_response(model: type[BaseModel]) -> dict:
    """An OpenAPI ``responses`` entry of a GeoJSON body."""
    return {"content": {"application/geo+json": {"schema": inline_schema(model)}}}
