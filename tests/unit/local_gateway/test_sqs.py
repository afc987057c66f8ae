"""The local gateway's SQS event source: Lambda's event shape and partial-batch rules."""

from __future__ import annotations

from local_gateway.sqs import failed_ids, lambda_event

MESSAGE = {
    "MessageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
    "ReceiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a",
    "Body": "test",
    "Attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1545082649183"},
    "MD5OfBody": "098f6bcd4621d373cade4e832627b4f6",
}


def test_event_has_lambdas_sqs_record_shape() -> None:
    (record,) = lambda_event([MESSAGE], "my-queue", "us-east-2")["Records"]
    assert record == {
        "messageId": MESSAGE["MessageId"],
        "receiptHandle": MESSAGE["ReceiptHandle"],
        "body": "test",
        "attributes": MESSAGE["Attributes"],
        "messageAttributes": {},
        "md5OfBody": MESSAGE["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-2:123456789012:my-queue",
        "awsRegion": "us-east-2",
    }


def test_partial_batch_response_rules() -> None:
    batch = {"a", "b"}
    assert failed_ids(None, batch) == set()
    assert failed_ids({"batchItemFailures": []}, batch) == set()
    assert failed_ids({"batchItemFailures": [{"itemIdentifier": "b"}]}, batch) == {"b"}
    # An identifier that is empty or not in the batch fails the whole batch.
    assert failed_ids({"batchItemFailures": [{"itemIdentifier": ""}]}, batch) is None
    assert failed_ids({"batchItemFailures": [{"itemIdentifier": "zz"}]}, batch) is None
