package s3store

import (
	"errors"

	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// apiCode returns the S3 error code of err ("" if it carries none).
func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// httpStatus returns the HTTP status of the response that failed (0 if none).
func httpStatus(err error) int {
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// errSummary names an error by its S3 code without the SDK's request detail.
func errSummary(err error) string {
	if code := apiCode(err); code != "" {
		return code
	}
	return err.Error()
}

// isNotFound reports a missing key or version (not a missing bucket, which is
// a configuration error, never "object absent").
func isNotFound(err error) bool {
	switch apiCode(err) {
	case "NoSuchBucket":
		return false
	case "NoSuchKey", "NoSuchVersion", "NotFound":
		return true
	}
	return httpStatus(err) == 404
}

func isPreconditionFailed(err error) bool {
	return apiCode(err) == "PreconditionFailed" || httpStatus(err) == 412
}

func isNotImplemented(err error) bool {
	return apiCode(err) == "NotImplemented" || httpStatus(err) == 501
}

// isConditionalConflict reports S3's 409 for concurrent conditional writes.
func isConditionalConflict(err error) bool {
	return apiCode(err) == "ConditionalRequestConflict"
}
