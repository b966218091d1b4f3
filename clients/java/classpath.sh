# Sourced by build.sh and run.sh: the runtime classpath from Debian's jars in /usr/share/java
# (libgrpc-java, libprotobuf-java, libnetty-java, libguava-java, libperfmark-java,
# libgoogle-gson-java, junit4, ...). No Maven: every jar comes from an apt package.
java_jars=(
  grpc-api grpc-context grpc-core grpc-netty grpc-protobuf grpc-protobuf-lite grpc-stub
  protobuf guava gson perfmark-api error_prone_annotations jsr305 geronimo-annotation-1.3-spec
  netty-buffer netty-codec netty-codec-http netty-codec-http2 netty-codec-socks netty-common
  netty-handler netty-handler-proxy netty-resolver netty-transport
  netty-transport-native-unix-common
)
java_test_jars=(junit4 hamcrest-core)

# The classpath of the named jars of /usr/share/java; fails naming the first one missing.
jars_classpath() { # jars_classpath name...
  local cp="" j
  for j in "$@"; do
    if [ ! -f "/usr/share/java/$j.jar" ]; then
      echo "java: missing /usr/share/java/$j.jar (run clients/install-deps.sh)" >&2
      return 1
    fi
    cp="${cp:+$cp:}/usr/share/java/$j.jar"
  done
  printf '%s' "$cp"
}

java_classpath() { # java_classpath [test]
  local jars=("${java_jars[@]}")
  if [ "${1:-}" = test ]; then jars+=("${java_test_jars[@]}"); fi
  jars_classpath "${jars[@]}"
}

# The Servlet filter (servlet/): the Servlet 4 API (libservlet-api-java) to compile against, and
# embedded Jetty 9.4 (libjetty9-java) for its tests.
servlet_jars=(servlet-api)
servlet_test_jars=(jetty9-server jetty9-servlet jetty9-http jetty9-io jetty9-util jetty9-security)

servlet_classpath() { # servlet_classpath [test]
  local jars=("${servlet_jars[@]}")
  if [ "${1:-}" = test ]; then jars+=("${servlet_test_jars[@]}"); fi
  jars_classpath "${jars[@]}"
}
