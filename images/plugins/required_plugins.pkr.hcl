# Packer >= 1.10 no longer bundles the amazon, googlecompute and qemu builders: `packer init`
# installs them from this file. Debian's packer 1.6.6 bundles them and REJECTS this block, so it
# lives apart from the templates: `packer init images/plugins` once, then build images/.
packer {
  required_version = ">= 1.10.0"
  required_plugins {
    amazon = {
      source  = "github.com/hashicorp/amazon"
      version = ">= 1.3.0"
    }
    googlecompute = {
      source  = "github.com/hashicorp/googlecompute"
      version = ">= 1.1.0"
    }
    qemu = {
      source  = "github.com/hashicorp/qemu"
      version = ">= 1.1.0"
    }
  }
}
