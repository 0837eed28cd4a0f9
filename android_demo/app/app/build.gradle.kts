import org.jetbrains.kotlin.gradle.dsl.JvmTarget
import javax.inject.Inject

plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
}

android {
    namespace = "dev.ravit.demo"
    compileSdk = 35

    defaultConfig {
        applicationId = "dev.ravit.demo"
        minSdk = 26
        targetSdk = 35
        versionCode = 1
        versionName = "0.1.0"
    }

    buildTypes {
        release {
            isMinifyEnabled = false
            proguardFiles(getDefaultProguardFile("proguard-android-optimize.txt"), "proguard-rules.pro")
        }
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }

    buildFeatures {
        viewBinding = true
    }

    androidResources {
        // Submodels are memory-mapped from the APK: they must be stored uncompressed.
        noCompress += "tflite"
    }
}

kotlin {
    compilerOptions {
        jvmTarget.set(JvmTarget.JVM_17)
    }
}

dependencies {
    implementation(project(":core"))

    implementation("androidx.core:core-ktx:1.13.1")
    implementation("androidx.appcompat:appcompat:1.7.0")
    implementation("androidx.activity:activity-ktx:1.9.3")
    implementation("com.google.android.material:material:1.12.0")
    implementation("androidx.lifecycle:lifecycle-viewmodel-ktx:2.8.7")
    implementation("androidx.lifecycle:lifecycle-runtime-ktx:2.8.7")
    implementation("org.jetbrains.kotlinx:kotlinx-coroutines-android:1.9.0")

    val camerax = "1.4.1"
    implementation("androidx.camera:camera-core:$camerax")
    implementation("androidx.camera:camera-camera2:$camerax")
    implementation("androidx.camera:camera-lifecycle:$camerax")
    implementation("androidx.camera:camera-view:$camerax")

    // LiteRT (formerly TensorFlow Lite): the Interpreter runtime, and the GPU delegate.
    val litert = "1.4.0"
    implementation("com.google.ai.edge.litert:litert:$litert")
    implementation("com.google.ai.edge.litert:litert-gpu:$litert")
    implementation("com.google.ai.edge.litert:litert-gpu-api:$litert")

    // JVM unit tests of the plain-Kotlin logic (also run without Gradle: ../run_logic_tests.sh).
    testImplementation("junit:junit:4.13.2")
}

// Converter output -> app assets ---------------------------------------------------------

/**
 * Copies the converter's output folder (manifest.json, labels.txt, branch_*.tflite) into
 * the generated assets under `ravit/`, failing with instructions when it is not there.
 */
abstract class CopyRavitModel : DefaultTask() {
    /** The folder as given (for the message). */
    @get:Input
    abstract val modelPath: Property<String>

    /** The files that are copied (an empty set when the folder is missing). */
    @get:InputFiles
    @get:PathSensitive(PathSensitivity.RELATIVE)
    abstract val modelFiles: ConfigurableFileCollection

    @get:OutputDirectory
    abstract val outputDir: DirectoryProperty

    @get:Inject
    abstract val fs: FileSystemOperations

    @TaskAction
    fun copyModel() {
        val folder = File(modelPath.get())
        if (!File(folder, "manifest.json").isFile) {
            throw GradleException(
                "No converted RAViT model at $folder (no manifest.json).\n" +
                    "Convert one first (see android_demo/README.md), e.g. from the repository root:\n" +
                    "  ravit demo --out runs/demo        # trains a tiny model and writes runs/demo/tflite\n" +
                    "or point the build at another converter output folder:\n" +
                    "  ./gradlew :app:installDebug -PravitModelDir=/path/to/tflite\n" +
                    "(the golden test fixture also works: -PravitModelDir=../core/src/test/resources/golden)"
            )
        }
        fs.sync {
            from(folder) {
                include("manifest.json", "labels.txt", "*.tflite")
            }
            into(outputDir.dir("ravit"))
        }
    }
}

val ravitModelDir: File = rootProject.file(
    providers.gradleProperty("ravitModelDir").getOrElse("default_model")
).normalize()

val copyRavitModel = tasks.register<CopyRavitModel>("copyRavitModel") {
    group = "ravit"
    description = "Copies the converted RAViT submodels ($ravitModelDir) into the app's assets."
    modelPath.set(ravitModelDir.absolutePath)
    modelFiles.from(fileTree(ravitModelDir) { include("manifest.json", "labels.txt", "*.tflite") })
}

androidComponents {
    onVariants { variant ->
        variant.sources.assets?.addGeneratedSourceDirectory(copyRavitModel, CopyRavitModel::outputDir)
    }
}
