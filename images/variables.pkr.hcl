# Inputs of the runner image build. Every source reads what it needs; images/build.sh and
# images/local/build.sh pass the values (see images/README.md).

variable "image_name" {
  type        = string
  default     = ""
  description = "Image / AMI name; empty: runner-<UTC yyyymmddhhmmss>."
}

variable "manifest_path" {
  type        = string
  default     = "manifest.json"
  description = "Where the manifest post-processor records the artifact ids (the launcher reads them)."
}

variable "awscli" {
  type        = string
  default     = "auto"
  description = "AWS CLI to bake: v1 (PyPI, in the venv), v2 (official zip), auto (v1 offline, v2 online)."
}

variable "disk_size_gb" {
  type        = number
  default     = 16
  description = "Root disk of the cloud images (GB)."
}

# ---- amazon-ebs
variable "aws_region" {
  type    = string
  default = "us-east-1"
}

variable "aws_instance_type" {
  type    = string
  default = "c6i.large"
}

variable "aws_subnet_id" {
  type        = string
  default     = ""
  description = "Subnet for the build instance; empty: the default VPC."
}

# ---- googlecompute
variable "gcp_project_id" {
  type        = string
  default     = ""
  description = "GCP project that builds and owns the image (required for the googlecompute build)."
}

variable "gcp_zone" {
  type    = string
  default = "us-central1-a"
}

variable "gcp_machine_type" {
  type    = string
  default = "e2-standard-2"
}

variable "image_family" {
  type        = string
  default     = "runner"
  description = "GCE image family: the launcher can resolve the newest image of the family."
}

# ---- qemu (local, offline): images/local/build.sh prepares these paths
variable "qemu_base_dir" {
  type        = string
  default     = "base"
  description = "Holds base.qcow2, vmlinuz, initrd.img (images/local/build-base.sh)."
}

variable "qemu_work_dir" {
  type        = string
  default     = "work"
  description = "Build scratch: id_ed25519 (ssh key), cidata/ (NoCloud seed), serial.log."
}

variable "qemu_output_dir" {
  type        = string
  default     = "output"
  description = "Packer's qemu output directory; must not exist yet."
}

variable "offline_dir" {
  type        = string
  default     = "offline"
  description = "Host dir with wheels/ and debs/ (images/local/fetch-offline.sh), copied into the qemu guest."
}

variable "qemu_accelerator" {
  type        = string
  default     = "tcg"
  description = "tcg (works everywhere) or kvm."
}

variable "qemu_cpu" {
  type        = string
  default     = "max"
  description = "QEMU -cpu model: max for tcg (pyarrow/polars need SSE4.2/AVX2), host for kvm."
}

variable "qemu_disk_compression" {
  type        = bool
  default     = true
  description = "Compress the final qcow2 (measured: 1.2 GB -> 0.4 GB, about 50 s more build time)."
}

locals {
  image_name     = var.image_name != "" ? var.image_name : "runner-${formatdate("YYYYMMDDhhmmss", timestamp())}"
  kernel_cmdline = "root=LABEL=root ro console=ttyS0 ds=nocloud"
  image_tags = {
    "runner-image" = "1"
    "Name"         = local.image_name
  }
}
