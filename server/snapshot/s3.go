package snapshot

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3Config says where the S3 copies go (skiff server --snapshot-s3-*, as
// k3s's --etcd-s3-* flags).
type S3Config struct {
	// Endpoint is HOST[:PORT] of the S3 API (s3.amazonaws.com, a MinIO,
	// Garage or Ceph RGW).
	Endpoint string
	Bucket   string
	// Folder is a key prefix inside the bucket ("" for the top).
	Folder string
	Region string
	// AccessKey and SecretKey; when empty the AWS_ACCESS_KEY_ID /
	// AWS_SECRET_ACCESS_KEY environment, then the instance's IAM role.
	AccessKey, SecretKey string
	// Insecure talks plain HTTP (a bucket on the same trusted network
	// only); the default is HTTPS.
	Insecure bool
	// CAFile trusts this PEM bundle for the endpoint's certificate (a
	// private CA) besides the system's roots.
	CAFile string
}

// S3Target keeps copies in an S3-compatible bucket, through minio-go.
type S3Target struct {
	cfg    S3Config
	client *minio.Client
}

// NewS3Target checks cfg and makes the client (no request is sent).
func NewS3Target(cfg S3Config) (*S3Target, error) {
	if cfg.Endpoint == "" || cfg.Bucket == "" {
		return nil, errors.New("S3 snapshot copies need an endpoint and a bucket (--snapshot-s3-endpoint, --snapshot-s3-bucket)")
	}
	if strings.Contains(cfg.Endpoint, "://") {
		return nil, fmt.Errorf("--snapshot-s3-endpoint %q: give HOST[:PORT], without a scheme (HTTPS unless --snapshot-s3-insecure)", cfg.Endpoint)
	}
	cfg.Folder = strings.Trim(cfg.Folder, "/")
	var creds *credentials.Credentials
	switch {
	case cfg.AccessKey != "" || cfg.SecretKey != "":
		if cfg.AccessKey == "" || cfg.SecretKey == "" {
			return nil, errors.New("give both --snapshot-s3-access-key and --snapshot-s3-secret-key, or neither (then the AWS_* environment or the IAM role)")
		}
		creds = credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, "")
	default:
		creds = credentials.NewChainCredentials([]credentials.Provider{&credentials.EnvAWS{}, &credentials.IAM{}})
	}
	tr, err := minio.DefaultTransport(!cfg.Insecure)
	if err != nil {
		return nil, err
	}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("--snapshot-s3-ca: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--snapshot-s3-ca %s: no PEM certificate in it", cfg.CAFile)
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	client, err := minio.New(cfg.Endpoint, &minio.Options{Creds: creds, Secure: !cfg.Insecure, Region: cfg.Region, Transport: tr})
	if err != nil {
		return nil, fmt.Errorf("S3 endpoint %s: %w", cfg.Endpoint, err)
	}
	return &S3Target{cfg: cfg, client: client}, nil
}

func (s *S3Target) String() string {
	if s.cfg.Folder == "" {
		return "s3://" + s.cfg.Bucket
	}
	return "s3://" + s.cfg.Bucket + "/" + s.cfg.Folder
}

func (s *S3Target) key(name string) string { return path.Join(s.cfg.Folder, name+Ext) }

// Check tells whether the bucket is reachable and exists.
func (s *S3Target) Check(ctx context.Context) error {
	ok, err := s.client.BucketExists(ctx, s.cfg.Bucket)
	if err != nil {
		return fmt.Errorf("%s: %w", s, err)
	}
	if !ok {
		return fmt.Errorf("%s: no such bucket at %s", s, s.cfg.Endpoint)
	}
	return nil
}

func (s *S3Target) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	_, err := s.client.PutObject(ctx, s.cfg.Bucket, s.key(name), r, size, minio.PutObjectOptions{ContentType: "application/octet-stream"})
	if err != nil {
		return fmt.Errorf("copy %s to %s: %w", name, s, err)
	}
	return nil
}

func (s *S3Target) Open(ctx context.Context, name string) (io.ReadCloser, error) {
	obj, err := s.client.GetObject(ctx, s.cfg.Bucket, s.key(name), minio.GetObjectOptions{})
	if err == nil {
		_, err = obj.Stat()
	}
	if err != nil {
		if obj != nil {
			obj.Close()
		}
		if minio.ToErrorResponse(err).Code == minio.NoSuchKey {
			return nil, fmt.Errorf("%s in %s: %w", name, s, os.ErrNotExist)
		}
		return nil, fmt.Errorf("%s in %s: %w", name, s, err)
	}
	return obj, nil
}

func (s *S3Target) List(ctx context.Context) ([]string, error) {
	prefix := ""
	if s.cfg.Folder != "" {
		prefix = s.cfg.Folder + "/"
	}
	var out []string
	for obj := range s.client.ListObjects(ctx, s.cfg.Bucket, minio.ListObjectsOptions{Prefix: prefix}) {
		if obj.Err != nil {
			return nil, fmt.Errorf("list %s: %w", s, obj.Err)
		}
		if name, ok := strings.CutSuffix(strings.TrimPrefix(obj.Key, prefix), Ext); ok && !strings.Contains(name, "/") {
			out = append(out, name)
		}
	}
	return out, nil
}

func (s *S3Target) Delete(ctx context.Context, name string) error {
	if err := s.client.RemoveObject(ctx, s.cfg.Bucket, s.key(name), minio.RemoveObjectOptions{}); err != nil {
		return fmt.Errorf("delete %s from %s: %w", name, s, err)
	}
	return nil
}
