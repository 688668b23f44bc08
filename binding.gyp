{
  "targets": [
    {
      "target_name": "lowrank",
      "sources": [
        "<!@(node -e \"const fs=require('fs');for(const d of ['native/addon','native/core','native/cpu','native/cpu/gemm'])for(const f of fs.readdirSync(d).sort())if(f.endsWith('.cc'))console.log(d+'/'+f)\")",
        "native/cuda/stub.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17", "-std=gnu++20"],
      "cflags": ["-O3", "-Wall", "-Wextra", "-Werror", "-fvisibility=hidden"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-O3", "-Wall", "-Wextra", "-Werror", "-fvisibility=hidden"],
      "ldflags": ["-pthread"],
      "libraries": ["-ldl"]
    }
  ]
}
