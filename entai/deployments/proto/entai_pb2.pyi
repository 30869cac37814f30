import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FeatureStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FEATURE_STATUS_UNSPECIFIED: _ClassVar[FeatureStatus]
    PRESENT: _ClassVar[FeatureStatus]
    NOT_FOUND: _ClassVar[FeatureStatus]
    NULL_VALUE: _ClassVar[FeatureStatus]
    OUTSIDE_MAX_AGE: _ClassVar[FeatureStatus]
FEATURE_STATUS_UNSPECIFIED: FeatureStatus
PRESENT: FeatureStatus
NOT_FOUND: FeatureStatus
NULL_VALUE: FeatureStatus
OUTSIDE_MAX_AGE: FeatureStatus

class EntityColumn(_message.Message):
    __slots__ = ("int64_values", "string_values")
    INT64_VALUES_FIELD_NUMBER: _ClassVar[int]
    STRING_VALUES_FIELD_NUMBER: _ClassVar[int]
    int64_values: Int64List
    string_values: StringList
    def __init__(self, int64_values: _Optional[_Union[Int64List, _Mapping]] = ..., string_values: _Optional[_Union[StringList, _Mapping]] = ...) -> None: ...

class Int64List(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, values: _Optional[_Iterable[int]] = ...) -> None: ...

class StringList(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, values: _Optional[_Iterable[str]] = ...) -> None: ...

class DoubleList(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class PredictRequest(_message.Message):
    __slots__ = ("model", "entities", "request_features", "explain")
    class EntitiesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: EntityColumn
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[EntityColumn, _Mapping]] = ...) -> None: ...
    class RequestFeaturesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: DoubleList
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[DoubleList, _Mapping]] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ENTITIES_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FEATURES_FIELD_NUMBER: _ClassVar[int]
    EXPLAIN_FIELD_NUMBER: _ClassVar[int]
    model: str
    entities: _containers.MessageMap[str, EntityColumn]
    request_features: _containers.MessageMap[str, DoubleList]
    explain: bool
    def __init__(self, model: _Optional[str] = ..., entities: _Optional[_Mapping[str, EntityColumn]] = ..., request_features: _Optional[_Mapping[str, DoubleList]] = ..., explain: _Optional[bool] = ...) -> None: ...

class PredictResponse(_message.Message):
    __slots__ = ("model", "version", "versions", "predictions", "request_id", "explanations")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    EXPLANATIONS_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: int
    versions: _containers.RepeatedScalarFieldContainer[int]
    predictions: _containers.RepeatedScalarFieldContainer[float]
    request_id: str
    explanations: _containers.RepeatedCompositeFieldContainer[RowExplanation]
    def __init__(self, model: _Optional[str] = ..., version: _Optional[int] = ..., versions: _Optional[_Iterable[int]] = ..., predictions: _Optional[_Iterable[float]] = ..., request_id: _Optional[str] = ..., explanations: _Optional[_Iterable[_Union[RowExplanation, _Mapping]]] = ...) -> None: ...

class FeatureContribution(_message.Message):
    __slots__ = ("name", "contribution", "value", "masked", "source", "status", "event_timestamp")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    MASKED_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    name: str
    contribution: float
    value: float
    masked: bool
    source: str
    status: str
    event_timestamp: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., contribution: _Optional[float] = ..., value: _Optional[float] = ..., masked: _Optional[bool] = ..., source: _Optional[str] = ..., status: _Optional[str] = ..., event_timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RowExplanation(_message.Message):
    __slots__ = ("version", "alias", "method", "prediction", "margin", "base_value", "features")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    PREDICTION_FIELD_NUMBER: _ClassVar[int]
    MARGIN_FIELD_NUMBER: _ClassVar[int]
    BASE_VALUE_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    version: int
    alias: str
    method: str
    prediction: float
    margin: float
    base_value: float
    features: _containers.RepeatedCompositeFieldContainer[FeatureContribution]
    def __init__(self, version: _Optional[int] = ..., alias: _Optional[str] = ..., method: _Optional[str] = ..., prediction: _Optional[float] = ..., margin: _Optional[float] = ..., base_value: _Optional[float] = ..., features: _Optional[_Iterable[_Union[FeatureContribution, _Mapping]]] = ...) -> None: ...

class ExplainResponse(_message.Message):
    __slots__ = ("model", "request_id", "output", "explanations")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    EXPLANATIONS_FIELD_NUMBER: _ClassVar[int]
    model: str
    request_id: str
    output: str
    explanations: _containers.RepeatedCompositeFieldContainer[RowExplanation]
    def __init__(self, model: _Optional[str] = ..., request_id: _Optional[str] = ..., output: _Optional[str] = ..., explanations: _Optional[_Iterable[_Union[RowExplanation, _Mapping]]] = ...) -> None: ...

class GetOnlineFeaturesRequest(_message.Message):
    __slots__ = ("feature_service", "features", "entities", "full_feature_names")
    class EntitiesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: EntityColumn
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[EntityColumn, _Mapping]] = ...) -> None: ...
    FEATURE_SERVICE_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    ENTITIES_FIELD_NUMBER: _ClassVar[int]
    FULL_FEATURE_NAMES_FIELD_NUMBER: _ClassVar[int]
    feature_service: str
    features: FeatureList
    entities: _containers.MessageMap[str, EntityColumn]
    full_feature_names: bool
    def __init__(self, feature_service: _Optional[str] = ..., features: _Optional[_Union[FeatureList, _Mapping]] = ..., entities: _Optional[_Mapping[str, EntityColumn]] = ..., full_feature_names: _Optional[bool] = ...) -> None: ...

class FeatureList(_message.Message):
    __slots__ = ("names",)
    NAMES_FIELD_NUMBER: _ClassVar[int]
    names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, names: _Optional[_Iterable[str]] = ...) -> None: ...

class FeatureValue(_message.Message):
    __slots__ = ("double_value", "int64_value", "string_value", "bool_value", "timestamp_value", "int64_list_value", "string_list_value")
    DOUBLE_VALUE_FIELD_NUMBER: _ClassVar[int]
    INT64_VALUE_FIELD_NUMBER: _ClassVar[int]
    STRING_VALUE_FIELD_NUMBER: _ClassVar[int]
    BOOL_VALUE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_VALUE_FIELD_NUMBER: _ClassVar[int]
    INT64_LIST_VALUE_FIELD_NUMBER: _ClassVar[int]
    STRING_LIST_VALUE_FIELD_NUMBER: _ClassVar[int]
    double_value: float
    int64_value: int
    string_value: str
    bool_value: bool
    timestamp_value: _timestamp_pb2.Timestamp
    int64_list_value: Int64List
    string_list_value: StringList
    def __init__(self, double_value: _Optional[float] = ..., int64_value: _Optional[int] = ..., string_value: _Optional[str] = ..., bool_value: _Optional[bool] = ..., timestamp_value: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., int64_list_value: _Optional[_Union[Int64List, _Mapping]] = ..., string_list_value: _Optional[_Union[StringList, _Mapping]] = ...) -> None: ...

class FeatureResult(_message.Message):
    __slots__ = ("values", "statuses", "event_timestamps")
    VALUES_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIMESTAMPS_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedCompositeFieldContainer[FeatureValue]
    statuses: _containers.RepeatedScalarFieldContainer[FeatureStatus]
    event_timestamps: _containers.RepeatedCompositeFieldContainer[_timestamp_pb2.Timestamp]
    def __init__(self, values: _Optional[_Iterable[_Union[FeatureValue, _Mapping]]] = ..., statuses: _Optional[_Iterable[_Union[FeatureStatus, str]]] = ..., event_timestamps: _Optional[_Iterable[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]]] = ...) -> None: ...

class OnlineFeaturesMetadata(_message.Message):
    __slots__ = ("feature_names",)
    FEATURE_NAMES_FIELD_NUMBER: _ClassVar[int]
    feature_names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, feature_names: _Optional[_Iterable[str]] = ...) -> None: ...

class GetOnlineFeaturesResponse(_message.Message):
    __slots__ = ("metadata", "results")
    METADATA_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    metadata: OnlineFeaturesMetadata
    results: _containers.RepeatedCompositeFieldContainer[FeatureResult]
    def __init__(self, metadata: _Optional[_Union[OnlineFeaturesMetadata, _Mapping]] = ..., results: _Optional[_Iterable[_Union[FeatureResult, _Mapping]]] = ...) -> None: ...

class RecommendRequest(_message.Message):
    __slots__ = ("model", "user_id", "k", "exclude", "context")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    model: str
    user_id: int
    k: int
    exclude: _containers.RepeatedScalarFieldContainer[int]
    context: RecommendContext
    def __init__(self, model: _Optional[str] = ..., user_id: _Optional[int] = ..., k: _Optional[int] = ..., exclude: _Optional[_Iterable[int]] = ..., context: _Optional[_Union[RecommendContext, _Mapping]] = ...) -> None: ...

class RecommendContext(_message.Message):
    __slots__ = ("recent_views",)
    RECENT_VIEWS_FIELD_NUMBER: _ClassVar[int]
    recent_views: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, recent_views: _Optional[_Iterable[int]] = ...) -> None: ...

class RecommendedItem(_message.Message):
    __slots__ = ("item_id", "score")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    item_id: int
    score: float
    def __init__(self, item_id: _Optional[int] = ..., score: _Optional[float] = ...) -> None: ...

class RecommendResponse(_message.Message):
    __slots__ = ("model", "version", "items", "request_id", "recent_views_source", "fallback", "category_activity_source")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    RECENT_VIEWS_SOURCE_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_ACTIVITY_SOURCE_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: int
    items: _containers.RepeatedCompositeFieldContainer[RecommendedItem]
    request_id: str
    recent_views_source: str
    fallback: str
    category_activity_source: str
    def __init__(self, model: _Optional[str] = ..., version: _Optional[int] = ..., items: _Optional[_Iterable[_Union[RecommendedItem, _Mapping]]] = ..., request_id: _Optional[str] = ..., recent_views_source: _Optional[str] = ..., fallback: _Optional[str] = ..., category_activity_source: _Optional[str] = ...) -> None: ...
