#!/usr/bin/env bash
# PKI for the local cluster with openssl: one CA, the apiserver and kubelet serving certificates, a client
# certificate per component, the service-account key pair and one kubeconfig per client.
# Usage: gen-certs.sh PKI_DIR NODE_NAME NODE_IP
set -euo pipefail
d=$1 node=$2 node_ip=$3
mkdir -p "$d"
cd "$d"
umask 077
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 -subj "/CN=lastcall-local-ca" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null
openssl genrsa -out sa.key 2048 2>/dev/null
openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
sign() { # name subject extensions
  openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
  printf '%b' "$3" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$1.crt" -days 3650 -extfile "$1.ext" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}
server='basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n'
client='basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n'
sign apiserver "/CN=kube-apiserver" "${server}subjectAltName=DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:10.96.0.1,IP:127.0.0.1,IP:$node_ip\n"
sign kubelet-serving "/CN=$node" "${server}subjectAltName=DNS:$node,DNS:localhost,IP:127.0.0.1,IP:$node_ip\n"
sign admin "/O=system:masters/CN=kubernetes-admin" "$client"
sign apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "$client"
sign kubelet "/O=system:nodes/CN=system:node:$node" "$client"
sign controller-manager "/CN=system:kube-controller-manager" "$client"
sign scheduler "/CN=system:kube-scheduler" "$client"
kubeconfig() { # file user cert
  cat > "$1" <<KC
apiVersion: v1
kind: Config
clusters:
- name: lastcall-local
  cluster:
    certificate-authority: $d/ca.crt
    server: https://127.0.0.1:6443
users:
- name: $2
  user:
    client-certificate: $d/$3.crt
    client-key: $d/$3.key
contexts:
- name: lastcall-local
  context: {cluster: lastcall-local, user: $2}
current-context: lastcall-local
KC
}
kubeconfig admin.kubeconfig kubernetes-admin admin
kubeconfig kubelet.kubeconfig "system:node:$node" kubelet
kubeconfig controller-manager.kubeconfig system:kube-controller-manager controller-manager
kubeconfig scheduler.kubeconfig system:kube-scheduler scheduler
echo "$node $node_ip" > .node
