package pki

import (
	"fmt"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// KubeconfigName names the cluster, user and context of kubeconfigs written
// by WriteKubeconfig.
const KubeconfigName = "skiff"

// WriteKubeconfig writes a kubeconfig for serverURL with embedded CA and
// client certificate; cluster, user and context are named "skiff" and the
// context is current. The file is replaced atomically with mode 0600, also
// when a file with a wider mode was there before (clientcmd.WriteToFile
// would keep that mode and write in place, so the document is serialised
// with clientcmd.Write and written with WriteFileAtomic).
func WriteKubeconfig(path, serverURL string, caPEM, certPEM, keyPEM []byte) error {
	cfg := clientcmdapi.NewConfig()
	cluster := clientcmdapi.NewCluster()
	cluster.Server = serverURL
	cluster.CertificateAuthorityData = caPEM
	user := clientcmdapi.NewAuthInfo()
	user.ClientCertificateData = certPEM
	user.ClientKeyData = keyPEM
	kctx := clientcmdapi.NewContext()
	kctx.Cluster = KubeconfigName
	kctx.AuthInfo = KubeconfigName
	cfg.Clusters[KubeconfigName] = cluster
	cfg.AuthInfos[KubeconfigName] = user
	cfg.Contexts[KubeconfigName] = kctx
	cfg.CurrentContext = KubeconfigName

	data, err := clientcmd.Write(*cfg)
	if err != nil {
		return fmt.Errorf("write kubeconfig %s: %w", path, err)
	}
	if err := WriteFileAtomic(path, data, keyFileMode); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	return nil
}
