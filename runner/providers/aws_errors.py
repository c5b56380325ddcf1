"""AWS errors classified by code at the edge: auth is never capacity, and every message says what to do."""

from __future__ import annotations

from runner import settings
from runner.errors import AuthError, CapacityError, NotFoundError, QuotaError, RunnerError, SpecError

ZONE_CAPACITY = frozenset({"InsufficientInstanceCapacity", "InsufficientHostCapacity", "InsufficientCapacity",
                           "SpotMaxPriceTooLow", "Unsupported", "InsufficientFreeAddressesInSubnet"})
QUOTA = frozenset({"VcpuLimitExceeded", "InstanceLimitExceeded", "MaxSpotInstanceCountExceeded", "VolumeLimitExceeded"})
AUTH = frozenset({
    "UnauthorizedOperation", "AuthFailure", "InvalidClientTokenId", "ExpiredToken", "ExpiredTokenException",
    "RequestExpired", "SignatureDoesNotMatch", "AccessDenied", "AccessDeniedException", "OptInRequired",
    "UnrecognizedClientException", "InvalidAccessKeyId", "NoSuchEntity",
})
AUTH_BOTOCORE = frozenset({"NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError", "ProfileNotFound",
                           "TokenRetrievalError", "SSOTokenLoadError", "UnauthorizedSSOTokenError", "NoAuthTokenError"})
CREDENTIALS_FIX = "configure AWS credentials (aws configure, AWS_PROFILE or aws sso login), then run `runner doctor --cloud aws`"


def classify(code: str, message: str, what: str, scope: str = "") -> RunnerError:
    """An AWS error code -> the typed error a user can act on; auth is never reported as capacity."""
    text = f"{what}: {code}: {message}".rstrip(": ")
    if code in AUTH or code.startswith("AuthFailure.") or (code == "InvalidParameterValue" and "iamInstanceProfile" in message):
        if code == "AuthFailure.ServiceLinkedRoleCreationNotPermitted" or "service-linked role" in message.lower():
            fix = ("spot needs the EC2 Spot service-linked role, and these credentials may not create it: create it once with "
                   "`aws iam create-service-linked-role --aws-service-name spot.amazonaws.com` (docs/aws.md)")
        elif code == "NoSuchEntity" or code == "InvalidParameterValue":
            fix = "the instance profile does not exist: create it (docs/aws.md) or fix RUNNER_AWS_INSTANCE_PROFILE"
        elif "iam:PassRole" in message:
            fix = "the launcher may not pass the instance profile's role: grant iam:PassRole on it (docs/aws.md)"
        elif code in ("UnauthorizedOperation", "AccessDenied", "AccessDeniedException"):
            fix = "these credentials lack the permission: attach the launcher policy in docs/aws.md"
        else:
            fix = CREDENTIALS_FIX
        err: RunnerError = AuthError(f"{text}; {fix}")
    elif code in QUOTA:
        err = QuotaError(f"{text}; ask for a higher EC2 vCPU quota (Service Quotas) or use a smaller type", scope=scope)
    elif code in ZONE_CAPACITY:
        err = CapacityError(text, scope=scope)
    elif code.startswith("InvalidAMIID"):
        err = NotFoundError(f"{text}; build an image with `make image CLOUD=aws`, or pass --image with an AMI of this region")
    elif code.startswith("InvalidInstanceID"):
        err = NotFoundError(text)
    elif code.startswith(("InvalidSubnet", "InvalidGroup", "InvalidSecurityGroup", "InvalidVpc")):
        err = SpecError(f"{text}; fix RUNNER_AWS_SUBNETS / RUNNER_AWS_SECURITY_GROUP (or [aws] in {settings.path()})")
    else:
        err = RunnerError(text)
    err.code = code  # type: ignore[attr-defined]
    return err


def translate(e: Exception, what: str, scope: str = "") -> Exception:
    """A boto3/botocore exception -> a RunnerError; anything else is returned as it is."""
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(e, ClientError):
        err = e.response.get("Error", {})
        return classify(str(err.get("Code", "")), str(err.get("Message", "")), what, scope)
    if isinstance(e, BotoCoreError):
        if {c.__name__ for c in type(e).__mro__} & AUTH_BOTOCORE:
            return AuthError(f"{what}: {e}; {CREDENTIALS_FIX}")
        return RunnerError(f"{what}: {e} (check the network, and AWS_ENDPOINT_URL if it is set; then `runner doctor --cloud aws`)")
    return e


def call(what: str, fn, scope: str = "", **kw):
    """fn(**kw) with its AWS errors translated at the edge."""
    try:
        return fn(**kw)
    except Exception as e:
        err = translate(e, what, scope)
        if err is e:
            raise
        raise err from None
