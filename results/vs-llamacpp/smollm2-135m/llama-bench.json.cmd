/root/.cache/moa/llama.cpp-0.3.36/build/bin/llama-bench -m /root/.cache/moa/SmolLM2-135M-Instruct.Q4_1.gguf -t 2 -p 512 -n 128 -d 0,2048,7680 -fa 0,1 -r 3 -o json
