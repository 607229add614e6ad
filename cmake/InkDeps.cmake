# Every library is found through pkg-config. A missing one stops the
# configure step with the Debian package that provides it, so an operator
# never has to guess; scripts/install-deps installs all of them.
find_package(PkgConfig REQUIRED)

set(INK_MISSING_PACKAGES "")

# ink_require(<prefix> <pkg-config module> <debian package>)
macro(ink_require prefix module debpkg)
  pkg_check_modules(${prefix} QUIET IMPORTED_TARGET ${module})
  if(NOT ${prefix}_FOUND)
    message(SEND_ERROR "pkg-config module '${module}' not found: apt-get install ${debpkg}")
    list(APPEND INK_MISSING_PACKAGES ${debpkg})
  endif()
endmacro()

# ink_require_program(<var> <program> <debian package>)
macro(ink_require_program var program debpkg)
  find_program(${var} ${program})
  if(NOT ${var})
    message(SEND_ERROR "program '${program}' not found: apt-get install ${debpkg}")
    list(APPEND INK_MISSING_PACKAGES ${debpkg})
  endif()
endmacro()

ink_require(GRPC grpc libgrpc-dev)
ink_require(GPR gpr libgrpc-dev)
ink_require(PROTOBUFC libprotobuf-c libprotobuf-c-dev)
ink_require(SECCOMP libseccomp libseccomp-dev)
ink_require(LIBCAP libcap libcap-dev)
ink_require(LIBNL libnl-route-3.0 libnl-route-3-dev)
ink_require(NFTABLES libnftables libnftables-dev)
ink_require(LIBBPF libbpf libbpf-dev)
ink_require(JANSSON jansson libjansson-dev)
ink_require(SQLITE sqlite3 libsqlite3-dev)
ink_require(CURL libcurl libcurl4-openssl-dev)
ink_require(LIBARCHIVE libarchive libarchive-dev)
ink_require(MHD libmicrohttpd libmicrohttpd-dev)
ink_require(LIBCRYPTO libcrypto libssl-dev)
ink_require(LIBSYSTEMD libsystemd libsystemd-dev)
if(INK_BUILD_TESTS)
  ink_require(CMOCKA cmocka libcmocka-dev)
endif()
ink_require_program(PROTOC_C protoc-c protobuf-c-compiler)

if(INK_MISSING_PACKAGES)
  list(REMOVE_DUPLICATES INK_MISSING_PACKAGES)
  string(REPLACE ";" " " _pkgs "${INK_MISSING_PACKAGES}")
  message(FATAL_ERROR "Missing build dependencies. Install them with:\n"
                      "  apt-get install ${_pkgs}\n"
                      "or run scripts/install-deps (as root).")
endif()
