/root/.cache/moa/llama.cpp-0.3.36/build/bin/llama-bench -m /root/.cache/moa/Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf -t 2 -p 512 -n 128 -d 0,2048,8192 -fa 0,1 -r 2 -o json
