package cni

import (
	"bytes"
	"errors"
	"io"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"go.yaml.in/yaml/v3"
)

// manifest is the part of packaging/kubernetes/weave.yaml the test reads.
type manifest struct {
	Kind     string
	Metadata struct{ Name, Namespace string }
	Data     map[string]string
	Spec     struct {
		Template struct {
			Spec struct {
				HostNetwork    bool           `yaml:"hostNetwork"`
				HostPID        bool           `yaml:"hostPID"`
				InitContainers []k8sContainer `yaml:"initContainers"`
				Containers     []k8sContainer
				Volumes        []struct {
					Name      string
					ConfigMap *struct {
						Name  string
						Items []struct{ Key, Path string }
					} `yaml:"configMap"`
				}
			}
		}
	}
}

type k8sContainer struct {
	Name    string
	Image   string
	Command []string
	Env     []struct {
		Name      string
		ValueFrom *struct {
			ConfigMapKeyRef *struct{ Name, Key string } `yaml:"configMapKeyRef"`
		} `yaml:"valueFrom"`
	}
	SecurityContext struct{ Privileged bool } `yaml:"securityContext"`
	VolumeMounts    []struct {
		Name      string
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
}

// TestKubernetesManifest checks the DaemonSet manifest with what the
// machine offers (no API server): it is valid YAML, its CNI configuration
// list is one libcni and the plugin accept, every mount names a volume and
// every reference a key that exists, and the router runs privileged on the
// host network.
func TestKubernetesManifest(t *testing.T) {
	b, err := os.ReadFile("../../packaging/kubernetes/weave.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	docs := map[string]manifest{}
	for {
		var m manifest
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		docs[m.Kind] = m
	}
	cm, ds := docs["ConfigMap"], docs["DaemonSet"]
	if cm.Metadata.Name != "weave-net" || ds.Metadata.Name != "weave-net" {
		t.Fatalf("want a ConfigMap and a DaemonSet named weave-net, got %v", docs)
	}
	list, err := libcni.NetworkConfFromBytes([]byte(cm.Data["10-weave.conflist"]))
	if err != nil {
		t.Fatalf("the conflist: %v", err)
	}
	if !slices.Contains(Versions.SupportedVersions(), list.CNIVersion) {
		t.Errorf("conflist version %s is not one weave-net serves", list.CNIVersion)
	}
	if len(list.Plugins) == 0 || list.Plugins[0].Network.Type != "weave-net" {
		t.Fatalf("the conflist's first plugin is not weave-net: %+v", list.Plugins)
	}
	conf, err := parseConf(list.Plugins[0].Bytes, false)
	if err != nil || !conf.DefaultRoute {
		t.Errorf("weave-net's configuration %s: %+v, %v; want defaultRoute for pods", list.Plugins[0].Bytes, conf, err)
	}

	spec := ds.Spec.Template.Spec
	if !spec.HostNetwork || !spec.HostPID {
		t.Error("the router must run on the host network, seeing the host's processes (for /proc/PID/ns/net)")
	}
	volumes := map[string]bool{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = true
		if v.ConfigMap != nil {
			for _, it := range v.ConfigMap.Items {
				if _, ok := cm.Data[it.Key]; !ok || v.ConfigMap.Name != cm.Metadata.Name {
					t.Errorf("volume %s names key %s of ConfigMap %s, which does not exist", v.Name, it.Key, v.ConfigMap.Name)
				}
			}
		}
	}
	var router *k8sContainer
	for i, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
		for _, m := range c.VolumeMounts {
			if !volumes[m.Name] {
				t.Errorf("container %s mounts volume %s, which is not defined", c.Name, m.Name)
			}
		}
		for _, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.ConfigMapKeyRef != nil {
				if _, ok := cm.Data[e.ValueFrom.ConfigMapKeyRef.Key]; !ok {
					t.Errorf("container %s: env %s names key %s, which the ConfigMap lacks", c.Name, e.Name, e.ValueFrom.ConfigMapKeyRef.Key)
				}
			}
		}
		if i >= len(spec.InitContainers) && strings.Contains(strings.Join(c.Command, " "), "weave router") {
			router = &c
		}
	}
	if router == nil || !router.SecurityContext.Privileged {
		t.Fatalf("no privileged container runs weave router: %+v", spec.Containers)
	}
	if !strings.Contains(strings.Join(router.Command, " "), "--no-plugin") {
		t.Error("the router in Kubernetes should not serve the Docker plugin (--no-plugin)")
	}
	if len(spec.InitContainers) == 0 || !strings.Contains(strings.Join(spec.InitContainers[0].Command, " "), "/host/opt/cni/bin/weave-net") {
		t.Error("no init container installs the weave-net binary")
	}
}
