# CMake toolchain file: cross-compile for 64-bit ARM Linux (aarch64) with Debian/Ubuntu's GNU
# cross toolchain, and run what was built (try_run, tests) under qemu-user.
#
#   apt-get install gcc-aarch64-linux-gnu g++-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
#   cmake -S . -B build/aarch64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake \
#         -DLLMPY_CUDA=OFF -DLLMPY_MPI=OFF
#   qemu-aarch64 -L /usr/aarch64-linux-gnu build/aarch64/test_gpt2 MODEL.bin STATE.bin
#
# dev/cross_aarch64.sh does all of it. LLMPY_AARCH64_PREFIX overrides the tool prefix (another
# vendor's toolchain: aarch64-none-linux-gnu-, ...), LLMPY_AARCH64_SYSROOT the target's root.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

if(NOT DEFINED LLMPY_AARCH64_PREFIX)
  set(LLMPY_AARCH64_PREFIX aarch64-linux-gnu-)
endif()
if(NOT DEFINED LLMPY_AARCH64_SYSROOT)
  set(LLMPY_AARCH64_SYSROOT /usr/aarch64-linux-gnu)
endif()
set(CMAKE_C_COMPILER ${LLMPY_AARCH64_PREFIX}gcc)
set(CMAKE_CXX_COMPILER ${LLMPY_AARCH64_PREFIX}g++)

# headers and libraries from the target's root only; programs (cmake, ninja) from the host
set(CMAKE_FIND_ROOT_PATH ${LLMPY_AARCH64_SYSROOT})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# target programs run under qemu-user, with the target's dynamic loader and libraries
find_program(LLMPY_QEMU_AARCH64 qemu-aarch64)
if(LLMPY_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${LLMPY_QEMU_AARCH64} -L ${LLMPY_AARCH64_SYSROOT})
endif()
