# Sourced by the CUDA scripts: CUDA_PATH (NVRTC reads the headers there) and the library path
# for libnvrtc and libcublas, from a CUDA toolkit or from the pip wheels torch installs
# (nvidia-cuda-nvrtc, nvidia-cublas). Prints what it found.
export CUDA_PATH=${CUDA_PATH:-/usr/local/cuda}
for lib in libnvrtc.so libcublas.so; do
  if ! ldconfig -p 2>/dev/null | grep -q "$lib"; then
    found=$(find "$CUDA_PATH"/ /usr/local/cuda*/ /usr/lib/python3*/ /usr/local/lib/python3*/ \
      -name "$lib*" 2>/dev/null | head -1)
    [ -n "$found" ] && export LD_LIBRARY_PATH="$(dirname "$found")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  fi
done
echo "CUDA_PATH=$CUDA_PATH LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
